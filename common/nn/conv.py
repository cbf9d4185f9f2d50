"""Channels-last convolutions (1-D and 2-D), transposed convolutions, weight norm.

Inputs are ``[B, T, C]`` (1-D, ``kernel_size`` an int or a 1-tuple) or ``[B, H, W, C]``
(2-D, a 2-tuple); extra leading axes are flattened into the batch. The first spatial
axis is time: ``"causal"`` applies to it only, the other spatial axes use ``"same"``.

Length contracts along one spatial axis of N samples, kernel K, stride s, dilation d,
effective kernel ``Ke = (K - 1) * d + 1`` (``conv_padding`` / ``conv_output_length``
and ``conv_transpose_trim`` / ``conv_transpose_output_length`` give the numbers):

``Conv``
    ``"same"``   out = ceil(N / s). Left padding ``max(Ke - s, 0) // 2``, fixed, so frame
                 t's window always starts at input ``t*s - left`` whatever N is; right
                 padding is the rest of ``Ke - s`` plus the zeros a last partial hop needs
                 (EnCodec's ``SConv1d`` extra padding), ``max((out - 1) * s + Ke - N -
                 left, 0)``. The odd sample of ``Ke - s`` goes on the right (TensorFlow's
                 SAME and PyTorch's ``padding="same"`` split). When s divides N this is
                 exactly TensorFlow's SAME; for other N, SAME would move the left padding
                 and shift every frame by a sample, which breaks chunked encoding. For
                 s = 1 and odd Ke it is the centred ``(Ke - 1) / 2`` on both sides.
                 EnCodec's non-causal split puts the odd sample on the left instead.
    ``"causal"`` out = ceil(N / s). Left padding ``Ke - s`` (EnCodec's
                 ``(K - 1) * d - (s - 1)``), right padding ``out * s - N`` (the zeros a
                 last partial hop needs), so frame t reads inputs
                 ``[t*s + s - Ke, t*s + s - 1]``: nothing after the end of its own hop
                 ``[t*s, t*s + s)``. When ``Ke < s`` (e.g. a 1x1 strided conv) the left
                 padding is 0 rather than negative and frame t reads
                 ``[t*s, t*s + Ke - 1]``, still inside its hop (the samples PyTorch's
                 unpadded conv reads); right padding is then
                 ``max((out - 1) * s + Ke - N, 0)``.
    ``"valid"``  no padding: out = floor((N - Ke) / s) + 1, which needs N >= Ke.

``ConvTranspose`` (PyTorch ``ConvTranspose1d`` semantics ``y[t*s + k*d] += x[t] w[k]``,
full length ``(N - 1) * s + Ke``):
    ``"valid"``  the full output, (N - 1) * s + Ke.
    ``"causal"`` out = N * s exactly: the ``Ke - s`` trailing samples are trimmed
                 (EnCodec's ``SConvTranspose1d`` with ``trim_right_ratio=1``), so output
                 sample j depends on inputs ``t <= j // s`` only.
    ``"same"``   out = N * s: ``(Ke - s) // 2`` trimmed on the left, the rest on the
                 right. This is exactly the adjoint of ``Conv(padding="same")`` on
                 ``N * s`` samples, and for even ``Ke - s`` equals PyTorch's
                 ``ConvTranspose1d(padding=(Ke - s) // 2)`` (HiFi-GAN / BigVGAN upsamplers).
                 PyTorch puts an odd extra trim on the left instead (DAC's odd strides):
                 use ``"valid"`` and slice for those.
    When ``Ke < s`` nothing is trimmed and the output is zero-padded on the right to N * s.

Weight layouts and the PyTorch correspondence (both frameworks cross-correlate, so no
kernel flip is involved in a weight import):

* ``Conv`` kernel ``[*K, in/groups, out]``, axes ``(conv_kernel, ..., conv_in, conv_out)``.
  ``torch.nn.Conv1d.weight`` is ``[out, in/groups, K]`` (``Conv2d``: ``[out, in/g, kh, kw]``):
  ``kernel = conv_weight_from_torch(weight)`` = ``weight.transpose(2, 1, 0)``.
* ``ConvTranspose`` kernel ``[*K, in, out/groups]``, axes ``(conv_kernel, ..., conv_in,
  conv_out)``. ``torch.nn.ConvTranspose1d.weight`` is ``[in, out/groups, K]``:
  ``kernel = conv_transpose_weight_from_torch(weight)`` = ``weight.transpose(2, 0, 1)``.
  Channel ``o`` of group ``g`` is output channel ``g * out/groups + o`` in both.
* Bias ``[out]`` is the same in both.

Weight norm (``weight_norm=True``) is ``torch.nn.utils.weight_norm(module, dim=0)``:
parameters ``weight_v`` (the kernel, layout as above) and ``weight_g`` with
``w = g * v / ||v||``, the norm over every axis except torch's dim 0. For ``Conv`` that
is the output-channel axis (``weight_g [out]``, axis ``conv_out``); for ``ConvTranspose``
torch's dim 0 is the *input* channel, so ``weight_g`` is ``[in]`` (axis ``conv_in``),
as in the weight-normed upsamplers of HiFi-GAN, BigVGAN, DAC, SNAC and EnCodec.
Import: ``weight_g = torch_g.reshape(-1)``, ``weight_v = *_weight_from_torch(torch_v)``
(``parametrizations.weight.original0`` is g, ``original1`` is v). ``weight_g`` is
initialised to ``||v||``, so a fresh weight-normed layer equals the plain one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from common.nn import axes as ax
from common.nn.axes import Initializer
from common.nn.cpu_conv import conv_transpose1d, depthwise_conv1d, use_cpu_forms

Padding = Literal["same", "causal", "valid"]
PADDINGS = ("same", "causal", "valid")
default_kernel_init = nnx.initializers.lecun_normal()  # fan-in = prod(K) * in/groups
_SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


# ---------------------------------------------------------------- length arithmetic


def _effective(kernel_size: int, dilation: int) -> int:
    return (kernel_size - 1) * dilation + 1


def _check_padding(padding: str) -> None:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")


def conv_output_length(n: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                       padding: Padding = "same") -> int:
    """Frames a ``Conv`` produces from ``n`` samples along one axis (module docstring)."""
    _check_padding(padding)
    if padding == "valid":
        ke = _effective(kernel_size, dilation)
        if n < ke:
            raise ValueError(f"'valid' conv needs at least {ke} samples, got {n}")
        return (n - ke) // stride + 1
    return -(-n // stride)


def conv_padding(n: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 padding: Padding = "same") -> tuple[int, int]:
    """``(left, right)`` zero padding a ``Conv`` applies to ``n`` samples along one axis."""
    out = conv_output_length(n, kernel_size, stride, dilation, padding)
    ke = _effective(kernel_size, dilation)
    if padding == "valid":
        return 0, 0
    # The left padding depends on the kernel and stride only, never on n: a frame's
    # window does not move when more samples arrive. The right padding completes the
    # last window.
    left = max(ke - stride, 0) // 2 if padding == "same" else max(ke - stride, 0)
    return left, max((out - 1) * stride + ke - n - left, 0)


def conv_transpose_trim(kernel_size: int, stride: int = 1, dilation: int = 1,
                        padding: Padding = "same") -> tuple[int, int]:
    """``(left, right)`` samples a ``ConvTranspose`` trims from its full output.

    A negative value is zero padding instead (only on the right, when ``Ke < stride``).
    """
    _check_padding(padding)
    if padding == "valid":
        return 0, 0
    extra = _effective(kernel_size, dilation) - stride
    left = 0 if padding == "causal" else max(extra, 0) // 2
    return left, extra - left


def conv_transpose_output_length(n: int, kernel_size: int, stride: int = 1,
                                 dilation: int = 1, padding: Padding = "same") -> int:
    """Samples a ``ConvTranspose`` produces from ``n`` frames along one axis."""
    left, right = conv_transpose_trim(kernel_size, stride, dilation, padding)
    return (n - 1) * stride + _effective(kernel_size, dilation) - left - right


# ---------------------------------------------------------------- PyTorch weights


def upsample_nearest(x: jax.Array) -> jax.Array:
    """``[B, H, W, C] -> [B, 2H, 2W, C]``, every pixel repeated 2x2 (the UNet's and the
    image VAE's upsampling before a 3x3 conv)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def conv_weight_from_torch(weight: np.ndarray) -> np.ndarray:
    """``torch ConvNd.weight [out, in/g, *K]`` -> ``Conv.kernel [*K, in/g, out]``."""
    w = np.asarray(weight)
    return np.transpose(w, (*range(2, w.ndim), 1, 0))


def conv_weight_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Inverse of ``conv_weight_from_torch``."""
    k = np.asarray(kernel)
    return np.transpose(k, (k.ndim - 1, k.ndim - 2, *range(k.ndim - 2)))


def conv_transpose_weight_from_torch(weight: np.ndarray) -> np.ndarray:
    """``torch ConvTransposeNd.weight [in, out/g, *K]`` -> ``ConvTranspose.kernel
    [*K, in, out/g]``."""
    w = np.asarray(weight)
    return np.transpose(w, (*range(2, w.ndim), 0, 1))


def conv_transpose_weight_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Inverse of ``conv_transpose_weight_from_torch``."""
    k = np.asarray(kernel)
    return np.transpose(k, (k.ndim - 2, k.ndim - 1, *range(k.ndim - 2)))


# ---------------------------------------------------------------- shared machinery


def _as_tuple(v: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    t = (int(v),) * n if isinstance(v, int) else tuple(int(i) for i in v)
    if len(t) != n or any(i < 1 for i in t):
        raise ValueError(f"{name} must be a positive int or {n} positive ints, got {v!r}")
    return t


def _dimension_numbers(nd: int) -> tuple[str, str, str]:
    s = _SPATIAL[nd]
    return f"N{s}C", f"{s}IO", f"N{s}C"


def weight_norm_kernel(v: jax.Array, g: jax.Array, axis: int) -> jax.Array:
    """``g * v / ||v||`` in float32, the norm over every axis of v except ``axis``."""
    v32 = v.astype(jnp.float32)
    axis = axis % v.ndim
    others = tuple(i for i in range(v.ndim) if i != axis)
    norm = jnp.sqrt(jnp.sum(jnp.square(v32), axis=others, keepdims=True))
    shape = [1] * v.ndim
    shape[axis] = -1
    return v32 * (g.astype(jnp.float32).reshape(shape) / norm)


class _ConvBase(nnx.Module):
    # Axis of the kernel that weight_g indexes (torch's dim 0) and its logical name.
    _g_axis: int
    _g_name: str

    def __init__(self, in_channels, out_channels, kernel_size, kernel_shape_fn, *, stride,
                 dilation, groups, padding, use_bias, weight_norm, kernel_init, bias_init,
                 dtype, param_dtype, rngs):
        ks = (int(kernel_size),) if isinstance(kernel_size, int) else tuple(kernel_size)
        nd = len(ks)
        if nd not in _SPATIAL:
            raise ValueError(f"kernel_size must have 1 to 3 entries, got {kernel_size!r}")
        _check_padding(padding)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _as_tuple(ks, nd, "kernel_size")
        self.stride = _as_tuple(stride, nd, "stride")
        self.dilation = _as_tuple(dilation, nd, "dilation")
        self.padding = padding
        self.dtype = dtype
        self.weight_norm = weight_norm
        names = (ax.CONV_KERNEL,) * nd + (ax.CONV_IN, ax.CONV_OUT)
        v = kernel_init(rngs.params(), kernel_shape_fn(self.kernel_size), param_dtype)
        if weight_norm:
            others = tuple(i for i in range(v.ndim) if i != self._g_axis % v.ndim)
            g = jnp.sqrt(jnp.sum(jnp.square(v.astype(jnp.float32)), axis=others))
            self.weight_v = ax.wrap(v, names)
            self.weight_g = ax.wrap(g.astype(param_dtype), (self._g_name,))
            self.kernel = None
        else:
            self.kernel = ax.wrap(v, names)
            self.weight_v = self.weight_g = None
        self.bias = (ax.param(rngs, bias_init, (out_channels,), (ax.CONV_OUT,), param_dtype)
                     if use_bias else None)

    @property
    def ndim(self) -> int:
        return len(self.kernel_size)

    def effective_kernel(self) -> jax.Array:
        """The kernel the convolution uses (``g * v / ||v||`` under weight norm)."""
        if self.weight_norm:
            return weight_norm_kernel(self.weight_v[...], self.weight_g[...], self._g_axis)
        return self.kernel[...]

    def _run(self, x: jax.Array, conv, add_bias: bool = True) -> jax.Array:
        nd = self.ndim
        if x.ndim < nd + 1 or x.shape[-1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects [..., *{nd} spatial, "
                             f"{self.in_channels}], got {x.shape}")
        dt = ax.compute_dtype(x, self.dtype)
        lead, tail = x.shape[:x.ndim - nd - 1], x.shape[x.ndim - nd - 1:]
        xb = x.reshape((-1, *tail)) if lead else x[None]
        y = conv(xb.astype(dt), self.effective_kernel().astype(dt))
        if add_bias and self.bias is not None:
            y = y + self.bias[...].astype(dt)
        return y.reshape(*lead, *y.shape[1:]) if lead else y[0]

    def _axis_padding(self, axis: int) -> Padding:
        # Causality is about time only: the other spatial axes are centred.
        return "same" if (self.padding == "causal" and axis > 0) else self.padding

    def _check_streamable(self) -> None:
        if self.ndim != 1 or self.padding != "causal":
            raise ValueError(f"{type(self).__name__}: streaming needs a 1-D causal layer, "
                             f"this one is {self.ndim}-D with padding {self.padding!r}")


class Conv(_ConvBase):
    """N-D convolution (cross-correlation) with same / causal / valid padding.

    Kernel ``[*kernel_size, in/groups, out]``; depthwise is ``groups=in_channels``
    (on CPU a 1-D depthwise conv of stride 1 runs as shifted multiply-adds,
    ``common.nn.cpu_conv``: XLA's CPU grouped convolution is ~25x slower).
    Shapes: ``x [B, *spatial, in] -> [B, *spatial_out, out]`` in ``dtype`` (else x's
    dtype), ``spatial_out`` per the module docstring's contract.
    """

    _g_axis = -1
    _g_name = ax.CONV_OUT
    from_torch_weight = staticmethod(conv_weight_from_torch)
    to_torch_weight = staticmethod(conv_weight_to_torch)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        padding: Padding = "same",
        use_bias: bool = True,
        weight_norm: bool = False,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = nnx.initializers.zeros_init(),
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            in_channels, out_channels, kernel_size,
            lambda ks: (*ks, in_channels // groups, out_channels),
            stride=stride, dilation=dilation, groups=groups, padding=padding,
            use_bias=use_bias, weight_norm=weight_norm, kernel_init=kernel_init,
            bias_init=bias_init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def _depthwise(self, dtype) -> bool:
        """Whether this call runs as shifted multiply-adds (``common.nn.cpu_conv``): a
        1-D depthwise conv (one channel per group), stride 1, float32, on CPU."""
        return (self.ndim == 1 and self.groups == self.in_channels == self.out_channels
                and self.stride == (1,) and jnp.dtype(dtype) == jnp.float32
                and use_cpu_forms())

    def _conv(self, xb: jax.Array, kernel: jax.Array, pads) -> jax.Array:
        if self._depthwise(xb.dtype):
            (left, right), = pads
            return depthwise_conv1d(xb, kernel[:, 0, :], self.dilation[0], left, right)
        return jax.lax.conv_general_dilated(
            xb, kernel, window_strides=self.stride, padding=pads,
            rhs_dilation=self.dilation, dimension_numbers=_dimension_numbers(self.ndim),
            feature_group_count=self.groups)

    def __call__(self, x: jax.Array) -> jax.Array:
        nd = self.ndim

        def conv(xb, kernel):
            spatial = xb.shape[1:-1]
            pads = [conv_padding(spatial[i], self.kernel_size[i], self.stride[i],
                                 self.dilation[i], self._axis_padding(i)) for i in range(nd)]
            return self._conv(xb, kernel, pads)

        return self._run(x, conv)

    # -- streaming (1-D causal): the layer's left context is carried between chunks --

    def stream_context(self) -> int:
        """Input samples of history a causal chunk needs (``Ke - s``, or 0)."""
        return max(_effective(self.kernel_size[0], self.dilation[0]) - self.stride[0], 0)

    def init_stream(self, batch: int, dtype: jnp.dtype = jnp.float32) -> jax.Array:
        """The state before the first chunk: ``[B, Ke - s, in]`` zeros, exactly the
        causal left padding of the offline call."""
        self._check_streamable()
        return jnp.zeros((batch, self.stream_context(), self.in_channels), dtype)

    def stream(self, x: jax.Array, state: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One chunk ``x [B, n, in]`` (n a multiple of the stride) -> ``([B, n / s, out],
        state)``. Chunks concatenated give the offline causal output exactly."""
        self._check_streamable()
        s = self.stride[0]
        if x.shape[1] % s:
            raise ValueError(f"Conv.stream: chunk of {x.shape[1]} samples is not a multiple "
                             f"of the stride {s}")
        xx = jnp.concatenate([state.astype(x.dtype), x], axis=1)
        y = self._run(xx, lambda xb, kernel: self._conv(xb, kernel, [(0, 0)]))
        ctx = self.stream_context()
        return y, (xx[:, xx.shape[1] - ctx:] if ctx else state)


class ConvTranspose(_ConvBase):
    """N-D transposed convolution with PyTorch ``ConvTransposeNd`` semantics.

    On CPU a 1-D one-group transposed conv runs as a matmul and an overlap-add
    (``common.nn.cpu_conv``: XLA's CPU backward of the dilated form is 10-50x slower).
    Kernel ``[*kernel_size, in, out/groups]`` (torch's ``[in, out/groups, *K]`` with the
    spatial axes moved first). Computed as an input-dilated convolution with the kernel
    flipped and regrouped, which is the exact adjoint of ``Conv`` (tested).
    Shapes: ``x [B, *spatial, in] -> [B, *spatial_out, out]``, ``spatial_out = N * s``
    for "same"/"causal" and ``(N - 1) * s + Ke`` for "valid".
    """

    _g_axis = -2
    _g_name = ax.CONV_IN
    from_torch_weight = staticmethod(conv_transpose_weight_from_torch)
    to_torch_weight = staticmethod(conv_transpose_weight_to_torch)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        padding: Padding = "same",
        use_bias: bool = True,
        weight_norm: bool = False,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = nnx.initializers.zeros_init(),
        dtype: jnp.dtype | None = None,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        super().__init__(
            in_channels, out_channels, kernel_size,
            lambda ks: (*ks, in_channels, out_channels // groups),
            stride=stride, dilation=dilation, groups=groups, padding=padding,
            use_bias=use_bias, weight_norm=weight_norm, kernel_init=kernel_init,
            bias_init=bias_init, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def _forward_kernel(self, kernel: jax.Array) -> jax.Array:
        """``[*K, in, out/g]`` -> the equivalent forward-conv kernel ``[*K, in/g, out]``.

        Group g's block ``[in/g, out/g]`` moves to columns ``g*out/g:(g+1)*out/g`` (the
        layout ``feature_group_count`` expects), and the spatial axes are reversed:
        scattering ``x[t]`` to ``t*s + k*d`` is correlating the dilated input with
        ``w[K - 1 - k]``.
        """
        nd, g = self.ndim, self.groups
        cin, cout_g = kernel.shape[-2], kernel.shape[-1]
        k = kernel.reshape(*self.kernel_size, g, cin // g, cout_g)
        k = jnp.swapaxes(k, -3, -2).reshape(*self.kernel_size, cin // g, g * cout_g)
        return jnp.flip(k, axis=tuple(range(nd)))

    def _overlap_add(self, dtype) -> bool:
        """Whether this call runs as a matmul and an overlap-add (``common.nn.cpu_conv``):
        1-D, one group, no dilation, float32, on CPU."""
        return (self.ndim == 1 and self.groups == 1 and self.dilation == (1,)
                and jnp.dtype(dtype) == jnp.float32 and use_cpu_forms())

    def _full(self, xb: jax.Array, kernel: jax.Array) -> jax.Array:
        """The untrimmed 1-D output, ``(n - 1) * s + Ke`` samples."""
        if self._overlap_add(xb.dtype):
            return conv_transpose1d(xb, kernel, self.stride[0])
        ke = _effective(self.kernel_size[0], self.dilation[0])
        return jax.lax.conv_general_dilated(
            xb, self._forward_kernel(kernel), window_strides=(1,), padding=[(ke - 1,) * 2],
            lhs_dilation=self.stride, rhs_dilation=self.dilation,
            dimension_numbers=_dimension_numbers(1), feature_group_count=self.groups)

    def __call__(self, x: jax.Array) -> jax.Array:
        nd = self.ndim

        def conv(xb, kernel):
            trims = [conv_transpose_trim(self.kernel_size[i], self.stride[i],
                                         self.dilation[i], self._axis_padding(i))
                     for i in range(nd)]
            if self._overlap_add(xb.dtype):
                (left, right), = trims
                full = self._full(xb, kernel)
                y = full[:, left:full.shape[1] - max(right, 0)]
                return jnp.pad(y, ((0, 0), (0, max(-right, 0)), (0, 0)))
            pads = []
            for i, (left, right) in enumerate(trims):
                ke = _effective(self.kernel_size[i], self.dilation[i])
                # Padding Ke - 1 on both sides gives the full output; each trimmed sample
                # is one less sample of padding (a negative trim pads more).
                pads.append((ke - 1 - left, ke - 1 - right))
            return jax.lax.conv_general_dilated(
                xb, self._forward_kernel(kernel), window_strides=(1,) * nd, padding=pads,
                lhs_dilation=self.stride, rhs_dilation=self.dilation,
                dimension_numbers=_dimension_numbers(nd), feature_group_count=self.groups)

        return self._run(x, conv)

    # -- streaming (1-D causal): the overlap-add tail is carried between chunks --

    def stream_context(self) -> int:
        """Output samples a chunk leaves for the next one to add (``Ke - s``, or 0)."""
        return max(_effective(self.kernel_size[0], self.dilation[0]) - self.stride[0], 0)

    def init_stream(self, batch: int, dtype: jnp.dtype = jnp.float32) -> jax.Array:
        """The state before the first chunk: a zero tail ``[B, Ke - s, out]``."""
        self._check_streamable()
        return jnp.zeros((batch, self.stream_context(), self.out_channels), dtype)

    def stream(self, x: jax.Array, state: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One chunk ``x [B, n, in]`` -> ``([B, n * s, out], state)``: the chunk's full
        output, its head plus the previous chunk's tail, the rest carried to the next
        (bias added once per sample). Chunks concatenated give the offline causal output
        exactly."""
        self._check_streamable()
        s, n = self.stride[0], x.shape[1]
        full = self._run(x, self._full, add_bias=False)
        ctx = self.stream_context()
        if ctx:
            full = full.at[:, :ctx].add(state.astype(full.dtype))
            y, state = full[:, :n * s], full[:, n * s:]
        else:  # Ke <= s: nothing overlaps; a short kernel leaves zeros (as offline)
            y = jnp.pad(full, ((0, 0), (0, n * s - full.shape[1]), (0, 0)))
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return y, state
