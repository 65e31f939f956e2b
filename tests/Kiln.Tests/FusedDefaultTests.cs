using Kiln.Backends;
using Kiln.Kernels;
using Kiln.Ops;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// The default bodies of <see cref="IFusedBackend"/> (linear, softmax, norms, attention and its backward, recurrent gates, causal
/// convolution and causal linear attention, composed from
/// primitives): a backend that implements only the primitive families, wrapped around ILGPU's CPU accelerator, must
/// pass the fused ops' conformance cases and give the same attention gradients as the CPU's fused kernels.
/// </summary>
[Collection("ilgpu-exclusive")]
public class FusedDefaultTests
{
    /// <summary>Forwards the primitive families to <paramref name="inner"/>; the fused ops fall to the interface's defaults.</summary>
    sealed class PrimitivesOnly(IBackend inner) : IBackend
    {
        public Device Device => inner.Device;
        public Storage Allocate(DType dtype, int length) => inner.Allocate(dtype, length);
        public Storage Upload(Array host, DType dtype) => inner.Upload(host, dtype);
        public Array Download(Tensor src) => inner.Download(src);
        public void Fill(Tensor dst, double value) => inner.Fill(dst, value);
        public void Copy(Tensor src, Tensor dst) => inner.Copy(src, dst);
        public void Unary(UnaryOp op, Tensor x, Tensor y, UnaryParams p = default) => inner.Unary(op, x, y, p);
        public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y) => inner.Binary(op, a, b, y);
        public void Bitwise(BitwiseOp op, Tensor a, Tensor b, Tensor y) => inner.Bitwise(op, a, b, y);
        public void Compare(CompareOp op, Tensor a, Tensor b, Tensor y) => inner.Compare(op, a, b, y);
        public void Where(Tensor cond, Tensor a, Tensor b, Tensor y) => inner.Where(cond, a, b, y);
        public void Clamp(Tensor x, double lo, double hi, Tensor y) => inner.Clamp(x, lo, hi, y);
        public void ReduceRows(ReduceOp op, Tensor x, int rows, int len, Tensor y) => inner.ReduceRows(op, x, rows, len, y);
        public void ReduceCols(ReduceOp op, Tensor x, int len, int cols, Tensor y) => inner.ReduceCols(op, x, len, cols, y);
        public void ArgReduceRows(bool max, Tensor x, int rows, int len, Tensor values, Tensor indices) => inner.ArgReduceRows(max, x, rows, len, values, indices);
        public void CumsumRows(Tensor x, int rows, int len, bool reverse, Tensor y) => inner.CumsumRows(x, rows, len, reverse, y);
        public void ScanRows(ScanOp op, Tensor x, int rows, int len, bool reverse, Tensor y, Tensor? indices) => inner.ScanRows(op, x, rows, len, reverse, y, indices);
        public void AnyAllRows(bool all, Tensor x, int rows, int len, Tensor y) => inner.AnyAllRows(all, x, rows, len, y);
        public void MatMul(Tensor a, Tensor b, Tensor c) => inner.MatMul(a, b, c);
        public void Gather(Tensor x, int axis, Tensor index, Tensor y) => inner.Gather(x, axis, index, y);
        public void ScatterAdd(Tensor y, int axis, Tensor index, Tensor src) => inner.ScatterAdd(y, axis, index, src);
        public void Scatter(Tensor y, int axis, Tensor index, Tensor src) => inner.Scatter(y, axis, index, src);
        public void SortRows(Tensor x, int rows, int len, bool descending, Tensor values, Tensor indices) => inner.SortRows(x, rows, len, descending, values, indices);
        public void SearchSorted(Tensor sorted, int seqRows, int seqLen, Tensor values, int valLen, bool right, Tensor y) => inner.SearchSorted(sorted, seqRows, seqLen, values, valLen, right, y);
        public void Random(RandomKind kind, ulong seed, ulong counter, double a, double b, Tensor dst) => inner.Random(kind, seed, counter, a, b, dst);
        public void PoolForward(Tensor x, PoolArgs args, Tensor y, Tensor? indices) => inner.PoolForward(x, args, y, indices);
        public void PoolBackward(Tensor g, Tensor? indices, PoolArgs args, Tensor dx) => inner.PoolBackward(g, indices, args, dx);
        public void ResampleForward(Tensor x, ResampleArgs args, Tensor y) => inner.ResampleForward(x, args, y);
        public void ResampleBackward(Tensor g, ResampleArgs args, Tensor dx) => inner.ResampleBackward(g, args, dx);
        public void GridSampleForward(Tensor x, Tensor grid, GridSampleArgs args, Tensor y) => inner.GridSampleForward(x, grid, args, y);
        public void GridSampleBackward(Tensor g, Tensor x, Tensor grid, GridSampleArgs args, Tensor? dx, Tensor? dgrid) => inner.GridSampleBackward(g, x, grid, args, dx, dgrid);
        public void RoiAlignForward(Tensor x, Tensor boxes, RoiAlignArgs args, Tensor y) => inner.RoiAlignForward(x, boxes, args, y);
        public void RoiAlignBackward(Tensor g, Tensor boxes, RoiAlignArgs args, Tensor dx) => inner.RoiAlignBackward(g, boxes, args, dx);
    }

    static void WithPrimitivesOnly(Action<Device> body)
    {
        var dev = Devices.All.First(d => d.Kind == DeviceKind.IlgpuCpu);
        var inner = BackendRegistry.Get(dev);
        BackendRegistry.Register(dev, new PrimitivesOnly(inner));
        try { body(dev); }
        finally { BackendRegistry.Register(dev, inner); }
    }

    [Fact]
    public void Convolutions_on_the_host_path_pass_their_conformance_cases()
    {
        // PrimitivesOnly has no conv kernels, so IConvBackend's default bodies run them through host memory.
        WithPrimitivesOnly(dev =>
        {
            foreach (var name in new[] { "conv.forward", "conv.transpose", "conv.weight_grad" })
                foreach (var row in Conformance.Validate(OpCatalog.Get(name), [dev], cases: 4))
                    Assert.True(row.Pass, row.Result.Detail);
        });
    }

    [Fact]
    public void Fused_ops_composed_from_primitives_pass_their_conformance_cases()
    {
        WithPrimitivesOnly(dev =>
        {
            foreach (var name in new[] { "softmax.softmax", "softmax.log_softmax", "norm.layer_norm", "norm.rms_norm", "attention.sdpa", "recurrent.lstm_gates", "recurrent.gru_gates",
                "sequence.causal_conv", "sequence.causal_conv_grad", "sequence.causal_linear_attention" })
                foreach (var row in Conformance.Validate(OpCatalog.Get(name), [dev], cases: 4))
                    Assert.True(row.Pass, row.Result.Detail);
        });
    }

    [Fact]
    public void Default_recurrent_gates_match_the_reference()
    {
        WithPrimitivesOnly(dev =>
        {
            int rows = 3, hid = 5;
            var g = new Generator(4);
            // A sliced view, so the default body sees inputs that start past their buffer's first element.
            var a = Tensor.Rand([rows + 1, 4 * hid], g, -6, 6, DType.Float64).To(dev).Narrow(0, 1, rows);
            var c = Tensor.Rand([rows, hid], g, -3, 3, DType.Float64).To(dev);
            var x = Tensor.Rand([rows, 3 * hid], g, -6, 6, DType.Float64).To(dev);
            var m = Tensor.Rand([rows, 3 * hid], g, -6, 6, DType.Float64).To(dev);
            var hc = Kiln.NN.RnnMath.LstmFused(a, c).ToDoubleArray();
            var y = Kiln.NN.RnnMath.GruFused(x, m, c).ToDoubleArray();
            double[] ad = a.ToDoubleArray(), cd = c.ToDoubleArray(), xd = x.ToDoubleArray(), md = m.ToDoubleArray();
            for (int r = 0; r < rows; r++)
            {
                var (eh, ec) = Reference.LstmGates(ad.AsSpan(r * 4 * hid, 4 * hid), cd.AsSpan(r * hid, hid));
                Close.Check(eh, hc.AsSpan(r * hid, hid), 1e-13, 1e-15, $"lstm h' row {r}");
                Close.Check(ec, hc.AsSpan((rows + r) * hid, hid), 1e-13, 1e-15, $"lstm c' row {r}");
                var e = Reference.GruGates(xd.AsSpan(r * 3 * hid, 3 * hid), md.AsSpan(r * 3 * hid, 3 * hid), cd.AsSpan(r * hid, hid));
                Close.Check(e, y.AsSpan(r * hid, hid), 1e-13, 1e-15, $"gru row {r}");
            }
        });
    }

    [Fact]
    public void Default_linear_and_attention_backward_match_the_cpu_kernels()
    {
        WithPrimitivesOnly(dev =>
        {
            var g = new Generator(3);
            var x = Tensor.Randn([5, 7], g, dtype: DType.Float64);
            var w = Tensor.Randn([4, 7], g, dtype: DType.Float64);
            var b = Tensor.Randn([4], g, dtype: DType.Float64);
            var cpu = Tensor.Linear(x, w, b, relu: true);
            Close.Check(cpu, Tensor.Linear(x.To(dev), w.To(dev), b.To(dev), relu: true).To(Device.Cpu), 1e-12, 1e-14, "linear");

            foreach (bool causal in new[] { false, true })
            {
                var q = Tensor.Randn([2, 5, 3], g, dtype: DType.Float64).RequiresGrad_();
                var k = Tensor.Randn([2, 6, 3], g, dtype: DType.Float64).RequiresGrad_();
                var v = Tensor.Randn([2, 6, 4], g, dtype: DType.Float64).RequiresGrad_();
                var up = Tensor.Randn([2, 5, 4], g, dtype: DType.Float64);
                var grads = Autograd.Grad([(Tensor.ScaledDotProductAttention(q, k, v, causal) * up).Sum()], [q, k, v]);
                var (qd, kd, vd) = (q.Detach().To(dev).RequiresGrad_(), k.Detach().To(dev).RequiresGrad_(), v.Detach().To(dev).RequiresGrad_());
                var dgrads = Autograd.Grad([(Tensor.ScaledDotProductAttention(qd, kd, vd, causal) * up.To(dev)).Sum()], [qd, kd, vd]);
                for (int i = 0; i < 3; i++) Close.Check(grads[i], dgrads[i].To(Device.Cpu), 1e-11, 1e-13, $"attention grad {i} causal {causal}");
            }
        });
    }
}
