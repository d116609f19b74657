"""Connect to a critic server: an OpenAI-compatible API (vllm serve, transformers serve, hosted) → RR_CRITIC."""
from __future__ import annotations

from comfy_api.latest import io

from ..models.errors import RationalRewardsError
from ..models.runtime.checkpoints import AUTO_MAX_PIXELS, RR_TRAINED_MAX_PIXELS
from ..models.runtime.factory import ServerSpec, build_critic
from .common import CATEGORY, CriticType, fail, naming, template_dirs
from .residency import CriticHandle

NODE = "Connect to Critic Server"


class ServerCritic(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="RR_ServerCritic",
            **naming("Connect to Critic Server", "vLLM", "OpenAI API", "remote critic", "reward model server"),
            category=CATEGORY,
            description="Uses a critic served over an OpenAI-compatible API (vllm serve, transformers serve or a "
                        "hosted API) instead of loading it into ComfyUI. Checks the server and model on connect.",
            inputs=[
                io.String.Input("base_url", display_name="server URL", default="http://127.0.0.1:8000/v1",
                                tooltip="The server's OpenAI API root, including its prefix (vLLM: "
                                        "http://HOST:8000/v1). Several replicas behind one load balancer are one URL."),
                io.String.Input("model", display_name="model name", default="",
                                tooltip="The model name the server serves (vLLM: --served-model-name, or the id or "
                                        "path it was started with). Empty: the server's only model."),
                io.String.Input("api_key_env", display_name="API key variable (name only)", default="",
                                tooltip="NAME of the environment variable holding the API key (e.g. OPENAI_API_KEY), "
                                        "set where ComfyUI starts; empty for a server without a key. Not the key "
                                        "itself: ComfyUI saves every input into the workflow and into each PNG."),
                io.Int.Input("max_concurrency", display_name="requests at once", default=4, min=1, max=64,
                             tooltip="How many critiques of a batch are sent at once; the server batches them."),
                io.Int.Input("timeout_s", display_name="timeout (seconds)", default=300, min=1, max=3600,
                             tooltip="Seconds to wait for one critique. A read timeout is not retried (the "
                                     "server may still be generating)."),
                io.Int.Input("retries", default=3, min=0, max=10,
                             tooltip="Retries with exponential backoff on connection errors, HTTP 429 and 5xx; "
                                     "other errors fail at once."),
                io.Boolean.Input("sleep_between_runs", display_name="let the server sleep between runs", default=False,
                                 tooltip="Share the GPU with a vLLM server started with --enable-sleep-mode and "
                                         "VLLM_SERVER_DEV_MODE=1: it sleeps (weights to host RAM) except while "
                                         "critiquing, so the generator gets the memory."),
                io.Int.Input("max_pixels", display_name="max image pixels (-1 = as trained)", default=AUTO_MAX_PIXELS,
                             min=AUTO_MAX_PIXELS, max=16_777_216, step=1,
                             tooltip=f"Downscale images above this pixel count before upload. -1 (default): what the "
                                     f"checkpoint was trained on ({RR_TRAINED_MAX_PIXELS:,} px when the served "
                                     f"model's name says RationalRewards, else the server's own limit). 0: send "
                                     f"them as they are (the server's processor applies its own limit)."),
            ],
            outputs=[CriticType.Output(display_name="critic")],
        )

    @classmethod
    def execute(cls, base_url: str, model: str, api_key_env: str, max_concurrency: int, timeout_s: int,
                retries: int, sleep_between_runs: bool, max_pixels: int) -> io.NodeOutput:
        spec = ServerSpec(base_url, model, api_key_env=api_key_env, max_concurrency=max_concurrency,
                          timeout_s=timeout_s, retries=retries, sleep_between_runs=sleep_between_runs,
                          max_pixels=max_pixels, template_dirs=tuple(template_dirs()))
        try:
            critic = build_critic(spec)   # asks the server for its models; checks the user's templates
            critic.name = f"{critic.name} @ {critic.backend.base_url}"
            if sleep_between_runs:
                critic.backend.sleep()   # until a critique needs it: the generator runs first
        except (RationalRewardsError, ValueError) as e:   # ValueError: an option the backend refuses
            raise fail(NODE, str(e)) from None
        return io.NodeOutput(CriticHandle(critic))
