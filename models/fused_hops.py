"""All hops of a layer-wise tied MemN2N in one cache-blocked pass (TensorFlow backend).

With layer-wise tying every hop reads the same memories: keys ``m = A[x] + T_A`` and
values ``c = C[x] + T_C``, two (B, M, D) tensors. Hop by hop over the whole batch,
each hop streams both from main memory twice forward and twice backward; at the
paper's sizes that is 24 passes over 7.7 MB per step, which bounds the step by
memory bandwidth, not arithmetic. Here the batch is cut into tiles of a few
examples whose memories fit in cache. A loop over tiles gathers a tile's memories
straight from the embedding tables and runs every hop on it; the backward pass is a
second loop over tiles, written out by hand (``tf.custom_gradient``), that
accumulates the table gradients without materialising the (B, M, D) memories or
their gradients.

The numbers are those of the layer-by-layer path in :mod:`diagnose.models.memn2n` to float32
rounding (``tests/test_fused_hops.py`` compares outputs, internals and gradients for
every factor this kernel covers). It covers layer-wise tying without dropout during
training; both H wirings, both padding modes, every temporal encoding and any ReLU
fraction.
"""

from __future__ import annotations

import math

import tensorflow as tf

__all__ = ["fused_hops", "tile_size"]

# Keys plus values of one tile should sit in the last-level cache with room to spare
# (measured here: a batched matrix-vector product reads 25-30 GB/s from tiles of
# 2-32 examples, 10 GB/s from the whole paper-size batch).
_TILE_BYTES = 2 * 2**20
_NAMES = ("scores", "attention", "h_term", "readout", "state")  # the per-hop outputs, in this order


def tile_size(memory_size: int, embed_dim: int) -> int:
    """Examples per tile: the largest power of two (at most 32) whose keys and values fit in 2 MiB."""
    per_example = 2 * memory_size * embed_dim * 4
    return max(1, min(32, 2 ** int(math.log2(max(1, _TILE_BYTES // per_example)))))


def fused_hops(windows, a_table, c_table, a_temporal, c_temporal, h_kernel, h_bias, *, hops: int,
               masked: bool, h_wiring: str, relu_units: int, query_value: float, tile: int, dense_grads: bool):
    """Runs ``hops`` hops; returns per-hop (B, K, .) tensors.

    Args:
        windows: (B, M) int32 token ids, 0 = padding.
        a_table, c_table: (V, D) embedding tables A and C.
        a_temporal, c_temporal: (M, D) temporal encodings, or None.
        h_kernel: (D, D) for ``h_wiring="state"``, (M, D) for ``"scores"``; h_bias (D,) or None.
        masked: padded slots hold nothing and get no attention.
        relu_units: the last ``relu_units`` hidden units pass through a ReLU after each hop.
        tile: examples per tile.
        dense_grads: the tables' gradients as dense (V, D) tensors, accumulated in
            place tile by tile; else ``tf.IndexedSlices`` with one row per looked-up
            slot, like the gradient of an embedding lookup. Dense pays where the
            table has no more rows than a batch looks up.

    Returns a dict of ``scores`` and ``attention`` (B, K, M), ``h_term``,
    ``readout`` and ``state`` (B, K, D). Gradients reach every table and weight
    argument.
    """
    spec = dict(hops=hops, masked=masked, h_wiring=h_wiring, relu_units=relu_units,
                query_value=float(query_value), tile=tile,
                temporal=(a_temporal is not None), bias=(h_bias is not None), dense=dense_grads)
    args = [windows, a_table, c_table, h_kernel]
    if a_temporal is not None:
        args += [a_temporal, c_temporal]
    if h_bias is not None:
        args.append(h_bias)
    return dict(zip(_NAMES, _kernel(spec)(*args)))


def _kernel(spec: dict):
    K, T, masked = spec["hops"], spec["tile"], spec["masked"]

    def unpack(args):
        windows, a_table, c_table, h_kernel, *rest = args
        a_t = c_t = bias = None
        if spec["temporal"]:
            a_t, c_t, *rest = rest
        if spec["bias"]:
            bias = rest[0]
        return windows, a_table, c_table, h_kernel, a_t, c_t, bias

    @tf.custom_gradient
    def run(*args):
        windows, a_table, c_table, h_kernel, a_t, c_t, bias = unpack(
            [args[0]] + [tf.stop_gradient(a) for a in args[1:]])
        batch = tf.shape(windows)[0]
        d = a_table.shape[1]
        n = (batch + T - 1) // T
        m_size = windows.shape[1]
        if m_size is None:
            raise ValueError("fused_hops needs the memory size (windows.shape[1]) known when tracing")
        # All-pad rows fill the last tile.
        tiles = tf.reshape(tf.pad(windows, [[0, n * T - batch], [0, 0]]), (n, T, m_size))
        relu = _relu_mask(d, spec["relu_units"])

        def memories(x):
            keep = tf.cast(tf.not_equal(x, 0), tf.float32)  # (T, M)
            keys, values = tf.gather(a_table, x), tf.gather(c_table, x)  # (T, M, D)
            if a_t is not None:
                keys, values = keys + a_t, values + c_t
            if masked:
                keys, values = keys * keep[..., None], values * keep[..., None]
            return keys, values, keep

        def forward(i, *outs):
            keys, values, keep = memories(tiles[i])
            u = tf.fill([T, d], spec["query_value"])
            per_hop = {name: [] for name in _NAMES}
            for _ in range(K):
                s = tf.einsum("bd,bmd->bm", u, keys)
                att = tf.nn.softmax(tf.where(keep > 0, s, -1e9) if masked else s, axis=-1)
                o = tf.einsum("bm,bmd->bd", att, values)
                if spec["h_wiring"] == "state":
                    h = tf.matmul(u, h_kernel)
                else:
                    h = tf.matmul(tf.where(keep > 0, s, 0.0) if masked else s, h_kernel)
                    if bias is not None:
                        h = h + bias
                z = h + o
                u = relu * tf.nn.relu(z) + (1.0 - relu) * z if relu is not None else z
                for name, val in zip(_NAMES, (s, att, h, o, u)):
                    per_hop[name].append(val)
            outs = [ta.write(i, tf.stack(per_hop[name], axis=1)) for ta, name in zip(outs, _NAMES)]
            return (i + 1, *outs)

        widths = (m_size, m_size, d, d, d)  # scores, attention: M; the rest: D
        arrays = [tf.TensorArray(tf.float32, size=n, element_shape=(T, K, w)) for w in widths]
        _, *arrays = tf.while_loop(lambda i, *_: i < n, forward, (tf.constant(0), *arrays))
        saved = [ta.stack() for ta in arrays]  # (n, T, K, .)
        stacked = [tf.reshape(x, (n * T, K, w))[:batch] for x, w in zip(saved, widths)]

        def grad(*upstream):
            ups = [tf.zeros_like(x) if g is None else tf.convert_to_tensor(g) for g, x in zip(upstream, stacked)]
            ups = [tf.reshape(tf.pad(g, [[0, n * T - batch], [0, 0], [0, 0]]), (n, T, K, w))
                   for g, w in zip(ups, widths)]
            return _backward(spec, n, T, batch, tiles, saved, ups, memories, a_table, c_table, h_kernel, a_t, bias,
                             relu)

        return tuple(stacked), grad

    return run



def _relu_mask(d: int, units: int):
    if not units:
        return None
    return tf.concat([tf.zeros((d - units,)), tf.ones((units,))], 0)


def _backward(spec, n, T, batch, tiles, saved, ups, memories, a_table, c_table, h_kernel, a_t, bias, relu):
    """Gradients of every kernel argument, one loop over tiles."""
    K, masked, dense, state_wiring = spec["hops"], spec["masked"], spec["dense"], spec["h_wiring"] == "state"
    vocab, d = a_table.shape
    m_size = tiles.shape[2]  # static: fixed when the tiles were cut

    def body(i, *acc):
        acc = list(acc)
        x = tiles[i]
        keys, values, keep = memories(x)
        s, att, h, o, state = (t[i] for t in saved)  # (T, K, .)
        up_s, up_att, up_h, up_o, up_state = (g[i] for g in ups)
        u_in = tf.concat([tf.fill([T, 1, d], spec["query_value"]), state[:, :-1]], axis=1)  # u entering each hop
        g = tf.zeros([T, d])
        d_scores, d_out, d_h = [None] * K, [None] * K, [None] * K
        for k in reversed(range(K)):
            g = g + up_state[:, k]
            if relu is not None:
                z = h[:, k] + o[:, k]
                g = g * (relu * tf.cast(z > 0, tf.float32) + (1.0 - relu))
            dh, do = g + up_h[:, k], g + up_o[:, k]
            datt = tf.einsum("bd,bmd->bm", do, values) + up_att[:, k]
            a = att[:, k]
            dlogit = a * (datt - tf.reduce_sum(datt * a, axis=-1, keepdims=True))
            ds = tf.where(keep > 0, dlogit, 0.0) if masked else dlogit
            ds = ds + up_s[:, k]
            if state_wiring:
                g = tf.matmul(dh, h_kernel, transpose_b=True)
            else:
                from_h = tf.matmul(dh, h_kernel, transpose_b=True)  # (T, M)
                ds = ds + (tf.where(keep > 0, from_h, 0.0) if masked else from_h)
                g = tf.zeros([T, d])
            g = g + tf.einsum("bm,bmd->bd", ds, keys)
            d_scores[k], d_out[k], d_h[k] = ds, do, dh
        ds_all, do_all, dh_all = (tf.stack(v, axis=1) for v in (d_scores, d_out, d_h))  # (T, K, .)
        # Sums of K outer products, written elementwise: XLA fuses them into one
        # vectorised loop, where a dot with a contraction of K = 6 ran 4-15x slower.
        d_keys = tf.reduce_sum(ds_all[..., None] * u_in[:, :, None, :], axis=1)  # (T, M, D)
        d_values = tf.reduce_sum(att[..., None] * do_all[:, :, None, :], axis=1)
        if masked:
            d_keys, d_values = d_keys * keep[..., None], d_values * keep[..., None]
        if state_wiring:
            acc[2] += tf.einsum("bkd,bke->de", u_in, dh_all)
        else:
            s_in = tf.where(keep[:, None, :] > 0, s, 0.0) if masked else s
            acc[2] += tf.einsum("bkm,bke->me", s_in, dh_all)
        j = 3
        if a_t is not None:
            acc[3] += tf.reduce_sum(d_keys, axis=0)
            acc[4] += tf.reduce_sum(d_values, axis=0)
            j = 5
        if bias is not None:
            acc[j] += tf.reduce_sum(dh_all, axis=[0, 1])
        if dense:
            rows = tf.reshape(x, (-1, 1))
            acc[0] = tf.tensor_scatter_nd_add(acc[0], rows, tf.reshape(d_keys, (-1, d)))
            acc[1] = tf.tensor_scatter_nd_add(acc[1], rows, tf.reshape(d_values, (-1, d)))
        else:
            acc[0] = acc[0].write(i, d_keys)
            acc[1] = acc[1].write(i, d_values)
        return (i + 1, *acc)

    if dense:
        tables = [tf.zeros((vocab, d)), tf.zeros((vocab, d))]
    else:
        tables = [tf.TensorArray(tf.float32, size=n, element_shape=(T, m_size, d)) for _ in range(2)]
    acc = tables + [tf.zeros_like(h_kernel)]
    if a_t is not None:
        acc += [tf.zeros_like(a_t), tf.zeros_like(a_t)]
    if bias is not None:
        acc.append(tf.zeros_like(bias))
    _, *acc = tf.while_loop(lambda i, *_: i < n, body, (tf.constant(0), *acc))
    if not dense:
        ids = tf.reshape(tiles, (-1,))[: batch * m_size]
        acc[:2] = [tf.IndexedSlices(tf.reshape(ta.stack(), (-1, d))[: batch * m_size], ids,
                                    tf.constant([vocab, d], tf.int64)) for ta in acc[:2]]
    d_a, d_c, d_h_kernel, *rest = acc
    return (None, d_a, d_c, d_h_kernel, *rest)
