"""ComfyUI-RationalRewards: a reasoning critic (RationalRewards) as ComfyUI nodes.

Registered through the V3 entry point only (no NODE_CLASS_MAPPINGS, which would
make ComfyUI skip the V3 path). The core in ``models/`` has no ComfyUI imports; the
nodes (and ComfyUI) are imported only when ComfyUI asks for the extension.
"""
WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    import logging

    from .models.runtime.compat import transformers_problem
    from .nodes import RationalRewardsExtension, register_model_folder

    register_model_folder()
    problem = transformers_problem()
    if problem:   # said once here; Load Critic / Load Grounding fail with the same message, other nodes work
        logging.getLogger("RationalRewards").error("ComfyUI-RationalRewards: %s", problem)
    return RationalRewardsExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
