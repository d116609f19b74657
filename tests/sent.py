"""What actually reached the model, read back in one backend-neutral shape.

Two sources, one shape (:class:`Sent`):

* :func:`from_chat_body` - the JSON body an OpenAI-compatible server received (the fake peer in
  ``tests/fixtures/fake_openai.py`` records it): roles, text parts, images decoded from their data URLs.
* :func:`from_model_input` - the token ids the in-process model's ``generate`` received, decoded with
  the checkpoint's own tokenizer (special tokens kept) and split at the chat-format markers, so an
  image is a run of ``<|image_pad|>`` tokens in its place.
  :func:`record_model_inputs` captures those ids from a real ``TransformersBackend`` call.

:func:`assert_prompt_sent` is the check shared by the tests of both backends and by the template
layout checks: what was sent is, part for part and in order, the request the critic built from its
template - roles, system text, every text part verbatim, images where the template put them - and the
user's own prompt appears in it exactly once, unaltered. ``Sent.layout()`` gives the bare structure
(``[("system", "text"), ("user", "image"), ("user", "text"), ...]``) for layout assertions.
"""
from __future__ import annotations

import base64
import io
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

from PIL import Image

Part = tuple[str, object]          # ("text", str) | ("image", PIL.Image or None when only its place is known)


@dataclass(frozen=True)
class Message:
    role: str
    parts: tuple[Part, ...]
    image_tokens: tuple[int, ...] = ()   # in-process only: <|image_pad|> tokens per image, in order

    @property
    def text(self) -> str:
        return "".join(p for kind, p in self.parts if kind == "text")

    @property
    def images(self) -> list:
        return [p for kind, p in self.parts if kind == "image"]


@dataclass(frozen=True)
class Sent:
    messages: tuple[Message, ...]
    generation_prompt: bool = True       # in-process: the input ends with the assistant turn's opening

    def role(self, role: str) -> list[Message]:
        return [m for m in self.messages if m.role == role]

    @property
    def user(self) -> Message:
        [last] = self.messages[-1:]
        assert last.role == "user", f"the last message sent is {last.role!r}, not the user's"
        return last

    @property
    def system(self) -> str | None:
        found = self.role("system")
        return found[0].text if found else None

    def layout(self) -> list[tuple[str, str]]:
        """(role, "text" | "image") for every part, adjacent text parts of one message merged."""
        out: list[tuple[str, str]] = []
        for m in self.messages:
            last = None
            for kind, _ in m.parts:
                if kind == "text" and last == "text":
                    continue
                out.append((m.role, kind))
                last = kind
        return out


def _merge_text(parts: Sequence[Part]) -> tuple[Part, ...]:
    merged: list[Part] = []
    for kind, value in parts:
        if kind == "text" and merged and merged[-1][0] == "text":
            merged[-1] = ("text", merged[-1][1] + value)
        elif kind != "text" or value:
            merged.append((kind, value))
    return tuple(merged)


# -- the server path -------------------------------------------------------------------------------

def decode_data_url(url: str) -> Image.Image:
    assert url.startswith("data:image/"), f"image sent as {url[:40]!r}, not a data URL"
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    img.load()
    return img


def from_chat_body(body: dict) -> Sent:
    """A chat-completions request body as the server received it."""
    messages = []
    for m in body["messages"]:
        content = m["content"]
        if isinstance(content, str):
            parts: list[Part] = [("text", content)]
        else:
            parts = []
            for p in content:
                if p["type"] == "text":
                    parts.append(("text", p["text"]))
                elif p["type"] == "image_url":
                    parts.append(("image", decode_data_url(p["image_url"]["url"])))
                else:
                    raise AssertionError(f"unexpected content part type {p['type']!r}")
        messages.append(Message(m["role"], _merge_text(parts)))
    return Sent(tuple(messages))


def sent_images(body: dict) -> list[Image.Image]:
    """The images of a chat body's last (user) message, in order, decoded (RGB)."""
    return [img.convert("RGB") for img in from_chat_body(body).user.images]


# -- the in-process path ---------------------------------------------------------------------------

_TURN = re.compile(r"<\|im_start\|>(\w+)\n(.*?)<\|im_end\|>\n?", re.S)
_IMAGE = re.compile(r"<\|vision_start\|>((?:<\|image_pad\|>)+)<\|vision_end\|>")


def from_model_input(tokenizer, input_ids, attention_mask=None) -> Sent:
    """One row of model input ids, decoded with special tokens and split into chat turns."""
    ids = [int(i) for i in input_ids]
    if attention_mask is not None:
        ids = [i for i, keep in zip(ids, attention_mask) if int(keep)]
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    messages, end = [], 0
    for turn in _TURN.finditer(text):
        assert text[end:turn.start()].strip() == "", f"text outside a chat turn: {text[end:turn.start()]!r}"
        parts: list[Part] = []
        counts: list[int] = []
        pos = 0
        body = turn.group(2)
        for img in _IMAGE.finditer(body):
            parts.append(("text", body[pos:img.start()]))
            parts.append(("image", None))
            counts.append(img.group(1).count("<|image_pad|>"))
            pos = img.end()
        parts.append(("text", body[pos:]))
        messages.append(Message(turn.group(1), _merge_text(parts), tuple(counts)))
        end = turn.end()
    tail = text[end:]
    assert tail in ("", "<|im_start|>assistant\n"), f"unexpected text after the last turn: {tail!r}"
    return Sent(tuple(messages), generation_prompt=bool(tail))


@contextmanager
def record_model_inputs(backend) -> Iterator[list[Sent]]:
    """Inside the block, every row the in-process model's ``generate`` receives is decoded into the
    yielded list (rows in batch order). A spy on this backend object's model only; nothing global."""
    model = backend.model
    original = model.generate
    seen: list[Sent] = []

    def spy(*args, **kwargs):
        ids, mask = kwargs["input_ids"], kwargs.get("attention_mask")
        for row in range(ids.shape[0]):
            seen.append(from_model_input(backend.tokenizer, ids[row].tolist(),
                                         None if mask is None else mask[row].tolist()))
        return original(*args, **kwargs)

    model.generate = spy
    try:
        yield seen
    finally:
        del model.generate          # back to the class's method


# -- the shared assertion --------------------------------------------------------------------------

def assert_prompt_sent(sent: Sent, expected, prompt: str | None = None) -> None:
    """``sent`` carries exactly ``expected`` (the ``ChatRequest`` the critic built).

    Checks the system text, then the user turn part by part: the same sequence of text and image
    parts, each text verbatim, each image where the template put it (pixel-equal when the sent
    image is known, i.e. on the server path). With ``prompt``, the user's own prompt must appear in
    the user turn exactly once, unaltered.
    """
    assert sent.system == expected.system, f"system sent {sent.system!r}, expected {expected.system!r}"
    other = [m.role for m in sent.messages if m.role not in ("system", "user")]
    assert not other and len(sent.role("user")) == 1, f"unexpected turns sent: {[m.role for m in sent.messages]}"
    want = _merge_text(expected.parts)
    got = sent.user.parts
    assert [k for k, _ in got] == [k for k, _ in want], \
        f"part order sent {[k for k, _ in got]}, expected {[k for k, _ in want]}"
    for i, ((kind, value), (_, wanted)) in enumerate(zip(got, want)):
        if kind == "text":
            assert value == wanted, f"text part {i} differs:\nsent:     {value!r}\nexpected: {wanted!r}"
        elif value is not None:
            a, b = value.convert("RGB"), wanted.convert("RGB")
            assert a.size == b.size and a.tobytes() == b.tobytes(), f"image part {i} is not the prepared image"
    if prompt is not None:
        assert sent.user.text.count(prompt) == 1, \
            f"the prompt {prompt!r} appears {sent.user.text.count(prompt)} times in what was sent"
    assert sent.generation_prompt, "the model input does not end with the assistant turn's opening"
