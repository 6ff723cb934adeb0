"""hama's phoneme model, run by onnxruntime instead of hama's own engine.

The `hama` wheel ships its waveform-to-phoneme CTC model as a weight pack
(`hama/assets/asr_waveform.hama`) for its own small Zig engine. That engine is slow on an ARM
core: counted under emulation as a Cortex-A53 (`make bench-arm`), 2.27 G instructions for a
2.1 s command, 87 % of the whole decode, about 3.8 s on a Pi Zero 2 W (at an assumed IPC of 0.6).
The same weights written
into an ONNX graph (`conformer`, with `pendant.core.onnx_proto`) and run by onnxruntime take
0.11 G there, and a thirteenth of the time on x86; per frame, the most likely token is the same
as the engine's.

The model: a log-mel front end (a 400-sample STFT every 160 samples as two convolutions, the
power, 80 mel bands, the natural log), a convolution to 144 channels at half the frame rate
(GELU), four conformer blocks (half a SiLU feed-forward, four-head self-attention, a
convolution module of a GLU, a 31-tap depthwise convolution and SiLU, the other half
feed-forward, a layer norm) and a projection to the tokens' log-probabilities, every 20 ms.
The pack is hama's format: a table of named float32/float16 tensors, then the data, each
tensor at its offset from the table's end rounded up to 16 bytes.
"""

from __future__ import annotations

import struct
from importlib import resources

import numpy as np

from pendant.core.errors import BackendUnavailable
from pendant.core.onnx_proto import Graph, outputs_of

PACK = "asr_waveform.hama"
HOP = 160
"""Samples between STFT frames; the model's frames are every other one (20 ms)."""
WINDOW = 400
"""Samples per STFT frame, centred on its hop (the waveform reflect-padded by half of it)."""
MAX_STFT_FRAMES = 3000
"""hama's engine reads at most this many STFT frames (30 s); so does the graph."""
MAX_SAMPLES = (MAX_STFT_FRAMES - 1) * HOP + WINDOW // 2
"""The samples the last of those frames reaches: the engine reads no more."""
BLOCKS = 4
DIM = 144
HEADS = 4
KERNEL = 31
INPUT = "waveform"
OUTPUT = "log_probs"
_DTYPES = {0: np.float32, 1: np.float16}


def read_pack(data: bytes) -> dict[str, np.ndarray]:
    """The named tensors of a hama weight pack, as float32; ValueError or struct.error when
    it is not one (or is cut short)."""
    if data[:6] != b"HAMAPK":
        raise ValueError("not a hama weight pack")
    (count,) = struct.unpack_from("<I", data, 8)
    at, table = 12, []
    for _ in range(count):
        (size,) = struct.unpack_from("<H", data, at)
        name = data[at + 2 : at + 2 + size].decode()
        at += 2 + size
        dtype, rank = data[at], data[at + 1]
        dims = struct.unpack_from(f"<{rank}I", data, at + 2)
        offset, nbytes = struct.unpack_from("<QQ", data, at + 2 + 4 * rank)
        at += 2 + 4 * rank + 16
        table.append((name, dtype, dims, offset, nbytes))
    start = (at + 15) // 16 * 16
    tensors = {}
    for name, dtype, dims, offset, nbytes in table:
        if dtype not in _DTYPES:
            continue  # integer tensors: none in the ASR model
        kind = np.dtype(_DTYPES[dtype]).newbyteorder("<")
        flat = np.frombuffer(data, kind, nbytes // kind.itemsize, start + offset)
        tensors[name] = flat.reshape(dims).astype(np.float32)
    return tensors


class _Builder:
    """The graph's pieces, over the pack's weights `w`."""

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        self.w = w
        self.g = g = Graph("hama_asr")
        self.half, self.one = g.scalar(0.5), g.scalar(1.0)

    def silu(self, x: str) -> str:
        return self.g.op("Mul", x, self.g.op("Sigmoid", x))

    def gelu(self, x: str) -> str:
        """The exact (erf) GELU: opset 17 has no Gelu operator."""
        g = self.g
        erf = g.op("Erf", g.op("Mul", x, g.scalar(float(np.sqrt(0.5)))))
        return g.op("Mul", g.op("Mul", x, self.half), g.op("Add", erf, self.one))

    def norm(self, x: str, prefix: str) -> str:
        weight = self.g.weight(prefix + "w", self.w[prefix + ".weight"])
        bias = self.g.weight(prefix + "b", self.w[prefix + ".bias"])
        return self.g.op("LayerNormalization", x, weight, bias, axis=-1, epsilon=1e-5)

    def linear(self, x: str, weight: str, bias: str) -> str:
        g, w = self.g, self.w
        return g.op("Add", g.op("MatMul", x, g.weight(weight, w[weight])), g.weight(bias, w[bias]))

    def conv(self, x: str, weight: str, bias: str, **attrs: int | list[int]) -> str:
        g, w = self.g, self.w
        return g.op("Conv", x, g.weight(weight, w[weight]), g.weight(bias, w[bias]), **attrs)

    def front_end(self) -> str:
        """Reflect-padded STFT (the real and imaginary kernels as one convolution), power, mel
        bands (a 1x1 convolution), log: (1, 80, STFT frames)."""
        g, w = self.g, self.w
        pad = g.op("Unsqueeze", INPUT, g.ints(1))
        half = WINDOW // 2
        pad = g.op("Pad", pad, g.ints(0, 0, half, 0, 0, half), mode="reflect")
        # At most MAX_STFT_FRAMES frames, as the engine: the last reaches real samples (or the
        # reflection of the waveform's own end), never the reflection of a cut.
        last = (MAX_STFT_FRAMES - 1) * HOP + WINDOW
        pad = g.op("Slice", pad, g.ints(0), g.ints(last), g.ints(2))
        kernels = np.concatenate([w["stft_real_kernel"], w["stft_imag_kernel"]])
        if kernels.shape[1:] != (1, WINDOW):
            raise ValueError(f"STFT kernels of {kernels.shape}")
        spectrum = g.op("Conv", pad, g.weight("stft", kernels), strides=[HOP])
        squares = g.op("Mul", spectrum, spectrum)
        squares = g.op("Reshape", squares, g.ints(1, 2, kernels.shape[0] // 2, -1))
        power = g.op("ReduceSum", squares, g.ints(1), keepdims=0)
        mel = g.op("Conv", power, g.weight("mel", np.ascontiguousarray(w["mel_fb"].T[:, :, None])))
        return g.op("Log", g.op("Max", mel, g.scalar(1e-10)))

    def feed_forward(self, x: str, prefix: str, first: int) -> str:
        """Half a SiLU feed-forward; its matrices are the export's `onnx::MatMul_<first>` and
        the next."""
        h = self.linear(
            self.norm(x, prefix + ".norm"), f"onnx::MatMul_{first}", prefix + ".fc1.bias"
        )
        h = self.linear(self.silu(h), f"onnx::MatMul_{first + 1}", prefix + ".fc2.bias")
        return self.g.op("Mul", h, self.half)

    def attention(self, x: str, p: str, first: int) -> str:
        """Multi-head self-attention over the whole utterance (pre-norm)."""
        g, head = self.g, DIM // HEADS
        qkv = self.linear(
            self.norm(x, p + "attn_norm"), f"onnx::MatMul_{first}", p + "attn.in_proj_bias"
        )
        qkv = g.op("Reshape", qkv, g.ints(1, -1, 3, HEADS, head))
        qkv = g.op("Transpose", qkv, perm=[2, 0, 3, 1, 4])  # (3, 1, HEADS, frames, head)
        split = g.op("Split", qkv, g.ints(1, 1, 1), outputs=3, axis=0)
        q, k, v = (g.op("Squeeze", t, g.ints(0)) for t in outputs_of(split, 3))
        q = g.op("Mul", q, g.scalar(float(head**-0.5)))
        scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Transpose", context, perm=[0, 2, 1, 3])
        context = g.op("Reshape", context, g.ints(1, -1, DIM))
        return self.linear(context, f"onnx::MatMul_{first + 4}", p + "attn.out_proj.bias")

    def convolution(self, x: str, p: str, block: int) -> str:
        """The conformer's convolution module: pointwise to a GLU, depthwise (its batch norm
        folded in by the export), SiLU, pointwise."""
        g = self.g
        depthwise = f"onnx::Conv_{804 + 3 * block}"
        if self.w[depthwise].shape != (DIM, 1, KERNEL):
            raise ValueError(f"block {block}'s depthwise kernel is {self.w[depthwise].shape}")
        h = g.op("Transpose", self.norm(x, p + "conv.norm"), perm=[0, 2, 1])
        h = self.conv(h, p + "conv.pointwise1.weight", p + "conv.pointwise1.bias")
        gate = g.op("Split", h, g.ints(DIM, DIM), outputs=2, axis=1)
        h = g.op("Mul", gate, g.op("Sigmoid", outputs_of(gate, 2)[1]))
        h = self.conv(h, depthwise, f"onnx::Conv_{805 + 3 * block}", group=DIM,
                      pads=[KERNEL // 2, KERNEL // 2])  # fmt: skip
        h = self.conv(self.silu(h), p + "conv.pointwise2.weight", p + "conv.pointwise2.bias")
        return g.op("Transpose", h, perm=[0, 2, 1])


def conformer(w: dict[str, np.ndarray]) -> bytes:
    """The ONNX model of hama's ASR pack: waveform (1, samples) float32 in [-1, 1) ->
    log_probs (1, frames, tokens). KeyError or ValueError when the pack is another model."""
    b = _Builder(w)
    g = b.g
    x = b.gelu(b.conv(b.front_end(), "onnx::Conv_801", "onnx::Conv_802", strides=[2], pads=[1, 1]))
    x = g.op("Transpose", x, perm=[0, 2, 1])  # (1, frames, DIM)
    for i in range(BLOCKS):
        p = f"acoustic_model.model.blocks.{i}."
        first = 829 + 9 * i  # the export's names for this block's matrices, in order of use
        x = g.op("Add", x, b.feed_forward(x, p + "ffn1", first))
        x = g.op("Add", x, b.attention(x, p, first + 2))
        x = g.op("Add", x, b.convolution(x, p, i))
        x = g.op("Add", x, b.feed_forward(x, p + "ffn2", first + 7))
        x = b.norm(x, p + "norm")
    proj = np.ascontiguousarray(w["acoustic_model.model.proj.weight"][:, :, 0].T)
    logits = g.op("MatMul", x, g.weight("proj", proj))
    logits = g.op("Add", logits, g.weight("proj_b", w["acoustic_model.model.proj.bias"]))
    g.output("LogSoftmax", OUTPUT, logits, axis=-1)
    return g.model({INPUT: [1, "samples"]}, {OUTPUT: [1, "frames", proj.shape[1]]})


def pack_bytes() -> bytes:
    """The weight pack in the installed hama wheel (pinned by the lock's sha256)."""
    return resources.files("hama.assets").joinpath(PACK).read_bytes()


class PhonemeModel:
    """`log_probs(audio)`: every 20 ms, the log-probability of each of hama's tokens."""

    def __init__(self) -> None:
        try:
            from hama.vocab import Vocabulary
        except ImportError as exc:  # a broken install: hama is one of the package's dependencies
            raise BackendUnavailable("hama is not installed") from exc
        from pendant.core.onnx_session import session

        self.tokens: list[str] = [*Vocabulary.load(None).decoder, "<wb>", "<blank>"]
        self.blank = self.tokens.index("<blank>")
        try:
            model = conformer(read_pack(pack_bytes()))
        except (KeyError, ValueError, struct.error) as exc:  # struct.error: a pack cut short
            raise BackendUnavailable(
                f"hama's {PACK} is not the model this recogniser reads ({exc}): "
                "install the hama version in the lock"
            ) from None
        self._session = session(model, f"hama {PACK}")

    def log_probs(self, audio: np.ndarray) -> np.ndarray:
        """(frames, tokens) float32 for `audio`, 16 kHz mono int16 of more than half an STFT
        window (the padding reflects it); ValueError when shorter."""
        if len(audio) <= WINDOW // 2:
            raise ValueError(f"{len(audio)} samples of audio: the model needs over {WINDOW // 2}")
        # hama's engine hears at most 30 s (and the half window its last frame reaches past).
        kept = audio[:MAX_SAMPLES]
        wav = (np.asarray(kept, dtype=np.float32) / 32768.0).reshape(1, -1)
        (out,) = self._session.run([OUTPUT], {INPUT: wav})
        return out[0]
