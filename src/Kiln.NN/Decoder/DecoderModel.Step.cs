using Kiln.Kernels;

namespace Kiln.NN.Decoder;

public sealed partial class DecoderModel
{
    // What a forward call hands its layers in SequenceContext.State: the rotary tables of its positions and, for one
    // token of one sequence under Generate, the buffers of LayerStep.
    // `chained`: the model runs its own stack, so a layer's output feeds only the next layer (and then the head), and
    // the layer steps may write it into the buffers instead of a new tensor (a runner may keep outputs).
    sealed class StepState(Tensor cos, Tensor sin, StepBuffers? buffers, bool chained)
    {
        public Tensor Cos { get; } = cos;
        public Tensor Sin { get; } = sin;
        public StepBuffers? Buffers { get; } = buffers;
        public bool Chained { get; } = chained;
    }

    /// <summary>
    /// The temporaries of one token through a dense layer (<see cref="LayerStep"/>) and the head, made once per
    /// <see cref="Generate"/> and reused by every layer and step, with the views the step reads them through. One step
    /// runs at a time (<see cref="TryEnter"/>); a layer that finds them in use takes the tensor-op path.
    /// </summary>
    internal sealed class StepBuffers : IDisposable
    {
        // Xn: a normed residual; Qkv: the stacked projection, viewed as Q [heads, hd], K [kv heads, hd], V [1, kv heads,
        // 1, hd]; Qn, Kn: their per-head norms; Qr, Kr: rotated ([heads, 1, hd], [kv heads, 1, hd]); Att [kv heads,
        // groups, hd] (Lse beside it); O: the output projection; X2: the residual after attention; Gu: the stacked
        // gate and up product; Act: silu(gate) * up; Down: the MLP's output; OutA, OutB: chained layers' outputs in
        // turn; Logits: the head's. The names ending in a digit are views of the one before as the rank the next call takes.
        public readonly Tensor Xn, Qkv, Q, Q3, K, K3, V, V3, Qn, Qn3, Kn, Kn3, Qr, Kr, Kr4, QAtt, Att, Lse, AttRow, O, X2, Gu, Gate, Up, Act, Down, Logits, OutA, OutB;
        readonly Tensor[] _owned;
        int _busy;

        public StepBuffers(DecoderConfig c, DType dtype, Device device)
        {
            int d = c.HiddenSize, heads = c.Heads, kvHeads = c.KvHeads, hd = c.HeadDim, qd = heads * hd, kvd = kvHeads * hd, inner = c.IntermediateSize;
            Tensor New(params int[] shape) => Tensor.Empty(shape, dtype, device);
            _owned = [Xn = New(1, d), Qkv = New(1, qd + 2 * kvd), Qn = New(heads, hd), Kn = New(kvHeads, hd), Qr = New(heads, 1, hd),
                Kr = New(kvHeads, 1, hd), Att = New(kvHeads, heads / kvHeads, hd), Lse = New(kvHeads, heads / kvHeads), O = New(1, 1, d),
                X2 = New(1, 1, d), Gu = New(1, 2 * inner), Act = New(1, inner), Down = New(1, 1, d), Logits = New(1, c.VocabSize), OutA = New(1, 1, d), OutB = New(1, 1, d)];
            Q = Qkv.Narrow(1, 0, qd).Reshape(heads, hd);
            K = Qkv.Narrow(1, qd, kvd).Reshape(kvHeads, hd);
            V = Qkv.Narrow(1, qd + kvd, kvd).Reshape(1, kvHeads, 1, hd);
            V3 = V.Reshape(kvHeads, 1, hd);
            (Q3, K3, Qn3, Kn3) = (Q.Reshape(heads, 1, hd), K.Reshape(kvHeads, 1, hd), Qn.Reshape(heads, 1, hd), Kn.Reshape(kvHeads, 1, hd));
            Kr4 = Kr.Reshape(1, kvHeads, 1, hd);
            QAtt = Qr.Reshape(kvHeads, heads / kvHeads, hd);
            AttRow = Att.Reshape(1, qd);
            (Gate, Up) = (Gu.Narrow(1, 0, inner), Gu.Narrow(1, inner, inner));
        }

        // Times the buffers were taken (a layer step or a head), for tests.
        public int Taken { get; private set; }

        public bool TryEnter()
        {
            if (Interlocked.Exchange(ref _busy, 1) != 0) return false;
            Taken++;
            return true;
        }

        public void Exit() => Volatile.Write(ref _busy, 0);

        public void Dispose()
        {
            foreach (var t in _owned) t.Dispose();
        }
    }

    /// <summary>
    /// One token of one sequence through a dense GQA + SwiGLU layer of an inference model, as the backend calls its tensor
    /// ops make (<see cref="GqaAttention.Forward"/>, <see cref="SwiGluMlp.Forward"/>, in the same order on the same
    /// operands, so the same bits) into <see cref="StepBuffers"/>. A small model's decoding step is bound by the cost of
    /// its ops, not by its weights (looping-tiny: ~30 tensor ops a layer at 0.1-0.5 us each beside 5 us of products);
    /// here a layer is 17 backend calls, and its output goes to a buffer (the model's own stack) or a new tensor (a runner's).
    /// </summary>
    sealed class LayerStep(DecoderConfig c, int index, Tensor inNorm, Tensor postNorm, GqaAttention attention, SwiGluMlp mlp)
    {
        readonly double _eps = c.RmsNormEps, _scale = 1.0 / Math.Sqrt(attention.HeadDim);

        // x must be one contiguous row [1, 1, hidden] of the weights' dtype and device.
        public bool Takes(Tensor x) =>
            x.Rank == 3 && x.Shape[0] == 1 && x.Shape[1] == 1 && x.IsContiguous && x.DType == inNorm.DType && x.Device == inNorm.Device;

        public Tensor Run(Tensor x, KvCache cache, StepState st, StepBuffers b)
        {
            var be = x.Device.Backend;
            var a = attention;
            int d = c.HiddenSize, heads = a.Heads, kvHeads = a.KvHeads, hd = a.HeadDim;
            be.RmsNormRows(x, inNorm, _eps, 1, d, b.Xn);
            be.Linear(b.Xn, a.Wqkv!, a.Bqkv, false, b.Qkv);
            var (q, k) = (b.Q3, b.K3);
            if (a.QNorm is not null) { be.RmsNormRows(b.Q, a.QNorm, _eps, heads, hd, b.Qn); q = b.Qn3; }
            if (a.KNorm is not null) { be.RmsNormRows(b.K, a.KNorm, _eps, kvHeads, hd, b.Kn); k = b.Kn3; }
            be.Rope(q, st.Cos, st.Sin, b.Qr);
            be.Rope(k, st.Cos, st.Sin, b.Kr);
            var (keySlot, valueSlot, k3, v3) = cache.ReserveRow(index, b.Kr4, b.V);
            be.Copy(b.Kr, keySlot);
            be.Copy(b.V3, valueSlot);
            // As ScaledDotProductAttention: the cache's prefix in place where the backend reads keys at a stride.
            if (!be.AttentionReadsStridedKeys) (k3, v3) = (k3.Contiguous(), v3.Contiguous());
            be.Attention(b.QAtt, k3, v3, false, _scale, b.Att, b.Lse);
            be.Linear(b.AttRow, a.Wo, null, false, b.O);
            be.Binary(BinaryOp.Add, x, b.O, b.X2);
            be.RmsNormRows(b.X2, postNorm, _eps, 1, d, b.Xn);
            be.Linear(b.Xn, mlp.WGateUp!, null, false, b.Gu);
            be.Unary(UnaryOp.Silu, b.Gate, b.Act);
            be.Binary(BinaryOp.Mul, b.Act, b.Up, b.Act);
            be.Linear(b.Act, mlp.WDown, null, false, b.Down);
            var y = !st.Chained ? Tensor.Empty(x.Shape, x.DType, x.Device) : ReferenceEquals(x, b.OutA) ? b.OutB : b.OutA;
            be.Binary(BinaryOp.Add, b.X2, b.Down, y);
            return y;
        }
    }
}
