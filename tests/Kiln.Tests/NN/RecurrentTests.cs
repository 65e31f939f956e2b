using FsCheck.Fluent;
using Kiln.NN;
using Kiln.Tests.TestKit;
using Xunit;
using static Kiln.Tests.NN.NNCheck;
using Close = Kiln.Tests.TestKit.Close;

namespace Kiln.Tests.NN;

/// <summary>
/// LSTMCell, GRUCell, LSTM and GRU: one step and whole sequences against a float64 transcription of PyTorch's
/// equations with the modules' weights, shapes (batch first, unbatched), initialization, gradients and argument errors.
/// </summary>
public class RecurrentTests
{
    const DType F64 = DType.Float64;

    static double Sig(double v) => 1 / (1 + Math.Exp(-v));

    // a[r, j] = b[j] + sum_k w[j, k] v[r, k] for the n rows of v [n, width]; w is [rows, width].
    static double[] Affine(double[] v, int n, int width, double[] w, double[]? b, int rows)
    {
        var a = new double[n * rows];
        for (int r = 0; r < n; r++)
            for (int j = 0; j < rows; j++)
            {
                double s = b?[j] ?? 0;
                for (int k = 0; k < width; k++) s += w[j * width + k] * v[r * width + k];
                a[r * rows + j] = s;
            }
        return a;
    }

    sealed record Weights(double[] Wih, double[] Whh, double[]? Bih, double[]? Bhh);

    static Weights Of(Parameter wih, Parameter whh, Parameter? bih, Parameter? bhh) =>
        new(wih.Value.ToDoubleArray(), whh.Value.ToDoubleArray(), bih?.Value.ToDoubleArray(), bhh?.Value.ToDoubleArray());

    // PyTorch's LSTM step, gates i, f, g, o.
    static (double[] H, double[] C) LstmRef(double[] x, double[] h, double[] c, int n, int inSize, int hid, Weights w)
    {
        var ax = Affine(x, n, inSize, w.Wih, w.Bih, 4 * hid);
        var ah = Affine(h, n, hid, w.Whh, w.Bhh, 4 * hid);
        var h2 = new double[n * hid]; var c2 = new double[n * hid];
        for (int r = 0; r < n; r++)
            for (int u = 0; u < hid; u++)
            {
                double A(int gate) => ax[r * 4 * hid + gate * hid + u] + ah[r * 4 * hid + gate * hid + u];
                double i = Sig(A(0)), f = Sig(A(1)), g = Math.Tanh(A(2)), o = Sig(A(3));
                c2[r * hid + u] = f * c[r * hid + u] + i * g;
                h2[r * hid + u] = o * Math.Tanh(c2[r * hid + u]);
            }
        return (h2, c2);
    }

    // PyTorch's GRU step, gates r, z, n, with n = tanh(W_in x + b_in + r (W_hn h + b_hn)).
    static double[] GruRef(double[] x, double[] h, int n, int inSize, int hid, Weights w)
    {
        var ax = Affine(x, n, inSize, w.Wih, w.Bih, 3 * hid);
        var ah = Affine(h, n, hid, w.Whh, w.Bhh, 3 * hid);
        var h2 = new double[n * hid];
        for (int r = 0; r < n; r++)
            for (int u = 0; u < hid; u++)
            {
                int at = r * 3 * hid + u;
                double rg = Sig(ax[at] + ah[at]), z = Sig(ax[at + hid] + ah[at + hid]);
                double nn = Math.Tanh(ax[at + 2 * hid] + rg * ah[at + 2 * hid]);
                h2[r * hid + u] = (1 - z) * nn + z * h[r * hid + u];
            }
        return h2;
    }

    // The gates composed from tensor ops, to compare the fused kernels and their backward against.
    static (Tensor H, Tensor C) LstmComposed(Tensor a, Tensor c)
    {
        var q = a.Chunk(4, -1);
        var c2 = q[1].Sigmoid() * c + q[0].Sigmoid() * q[2].Tanh();
        return (q[3].Sigmoid() * c2.Tanh(), c2);
    }

    static Tensor GruComposed(Tensor x, Tensor m, Tensor h)
    {
        var xs = x.Chunk(3, -1); var ms = m.Chunk(3, -1);
        var r = (xs[0] + ms[0]).Sigmoid();
        var z = (xs[1] + ms[1]).Sigmoid();
        var n = (xs[2] + r * ms[2]).Tanh();
        return n + z * (h - n);
    }

    static double[] Step(double[] seq, int t, int n, int width) => seq.AsSpan(t * n * width, n * width).ToArray();

    [Fact]
    public void LSTMCell_step_matches_transcription_batched_unbatched_and_from_zeros()
    {
        var cell = new LSTMCell(4, 5, generator: new Generator(1), dtype: F64);
        Assert.Equal(["weight_ih", "weight_hh", "bias_ih", "bias_hh"], cell.NamedParameters().Select(p => p.Name).ToArray());
        Assert.Equal(new Shape(20, 4), cell.WeightIh.Shape);
        Assert.Equal(new Shape(20, 5), cell.WeightHh.Shape);
        var w = Of(cell.WeightIh, cell.WeightHh, cell.BiasIh, cell.BiasHh);
        // PyTorch's init: every weight and bias within +-1/sqrt(hidden).
        Assert.All(w.Wih.Concat(w.Whh).Concat(w.Bih!).Concat(w.Bhh!), v => Assert.InRange(Math.Abs(v), 0, 1 / Math.Sqrt(5)));
        var x = R([3, 4], 2, -2, 2); var h = R([3, 5], 3); var c = R([3, 5], 4);
        var (eh, ec) = LstmRef(x.ToArray<double>(), h.ToArray<double>(), c.ToArray<double>(), 3, 4, 5, w);
        var (h2, c2) = cell.Forward(x, (h, c));
        Close.Check(eh, h2.ToArray<double>(), 1e-12, 1e-14, "lstm h'");
        Close.Check(ec, c2.ToArray<double>(), 1e-12, 1e-14, "lstm c'");
        var (zh, zc) = LstmRef(x.ToArray<double>(), new double[15], new double[15], 3, 4, 5, w);
        var (h0, c0) = cell.Forward(x);
        Close.Check(zh, h0.ToArray<double>(), 1e-12, 1e-14, "lstm h' from zeros");
        Close.Check(zc, c0.ToArray<double>(), 1e-12, 1e-14, "lstm c' from zeros");
        var (hu, cu) = cell.Forward(x.Narrow(0, 1, 1).Squeeze(0), (h.Narrow(0, 1, 1).Squeeze(0), c.Narrow(0, 1, 1).Squeeze(0)));
        Assert.Equal(new Shape(5), hu.Shape);
        Close.Check(eh[5..10], hu.ToArray<double>(), 1e-12, 1e-14, "unbatched h'");
        Close.Check(ec[5..10], cu.ToArray<double>(), 1e-12, 1e-14, "unbatched c'");
    }

    [Fact]
    public void GRUCell_step_matches_transcription_batched_unbatched_and_from_zeros()
    {
        var cell = new GRUCell(4, 5, generator: new Generator(5), dtype: F64);
        Assert.Equal(new Shape(15, 4), cell.WeightIh.Shape);
        var w = Of(cell.WeightIh, cell.WeightHh, cell.BiasIh, cell.BiasHh);
        Assert.All(w.Wih.Concat(w.Whh).Concat(w.Bih!).Concat(w.Bhh!), v => Assert.InRange(Math.Abs(v), 0, 1 / Math.Sqrt(5)));
        var x = R([3, 4], 6, -2, 2); var h = R([3, 5], 7);
        var expected = GruRef(x.ToArray<double>(), h.ToArray<double>(), 3, 4, 5, w);
        Close.Check(expected, cell.Forward(x, h).ToArray<double>(), 1e-12, 1e-14, "gru h'");
        Close.Check(GruRef(x.ToArray<double>(), new double[15], 3, 4, 5, w), cell.Forward(x).ToArray<double>(), 1e-12, 1e-14, "gru h' from zeros");
        var hu = cell.Forward(x.Narrow(0, 2, 1).Squeeze(0), h.Narrow(0, 2, 1).Squeeze(0));
        Assert.Equal(new Shape(5), hu.Shape);
        Close.Check(expected[10..15], hu.ToArray<double>(), 1e-12, 1e-14, "unbatched h'");
        // Without bias the biases are absent, not zero-filled parameters.
        var nb = new GRUCell(4, 5, bias: false, generator: new Generator(5), dtype: F64);
        Assert.Null(nb.BiasIh);
        Close.Check(GruRef(x.ToArray<double>(), h.ToArray<double>(), 3, 4, 5, Of(nb.WeightIh, nb.WeightHh, null, null)), nb.Forward(x, h).ToArray<double>(), 1e-12, 1e-14, "gru without bias");
    }

    [Fact]
    public void Cells_pass_gradcheck()
    {
        var lstm = new LSTMCell(3, 4, generator: new Generator(8), dtype: F64);
        var x = R([2, 3], 9, -2, 2); var h = R([2, 4], 10); var c = R([2, 4], 11);
        var r = GradCheck.Run(v => { var (h2, c2) = lstm.Forward(v[0], (v[1], v[2])); return Tensor.Concat([h2, c2], -1); }, [x, h, c]);
        Assert.True(r.Passed, $"lstm cell inputs: {r}");
        Parameters(lstm, () => { var (h2, c2) = lstm.Forward(x, (h, c)); return Tensor.Concat([h2, c2], -1); }, "lstm cell");
        var gru = new GRUCell(3, 4, generator: new Generator(12), dtype: F64);
        r = GradCheck.Run(v => gru.Forward(v[0], v[1]), [x, h]);
        Assert.True(r.Passed, $"gru cell inputs: {r}");
        Parameters(gru, () => gru.Forward(x, h), "gru cell");
    }

    // The layers' output at every step and final states (index layer * directions + direction) from the transcription,
    // input [L, N, I]: the reverse direction is the same recurrence run on the reversed sequence, its outputs put back in
    // step order and concatenated after the forward direction's on the feature axis.
    static (double[] Output, double[][] States) SeqRef(RecurrentLayer m, double[] x, int len, int n, int stateParts,
        Func<double[], double[][], int, Weights, double[][]> step, double[][]? init = null)
    {
        int hid = m.HiddenSize, dirs = m.NumDirections;
        var finals = new double[m.NumLayers * dirs * stateParts][];
        var seq = x; int width = m.InputSize;
        for (int l = 0; l < m.NumLayers; l++)
        {
            var outs = new double[len * n * dirs * hid];
            for (int d = 0; d < dirs; d++)
            {
                int k = l * dirs + d;
                var w = Of(m.WeightIh[k], m.WeightHh[k], m.BiasIh?[k], m.BiasHh?[k]);
                var state = Enumerable.Range(0, stateParts).Select(p => init?[p].AsSpan(k * n * hid, n * hid).ToArray() ?? new double[n * hid]).ToArray();
                for (int s = 0; s < len; s++)
                {
                    int t = d == 0 ? s : len - 1 - s;
                    state = step(Step(seq, t, n, width), state, width, w);
                    for (int r = 0; r < n; r++)
                        Array.Copy(state[0], r * hid, outs, (t * n + r) * dirs * hid + d * hid, hid);
                }
                for (int p = 0; p < stateParts; p++) finals[p * m.NumLayers * dirs + k] = state[p];
            }
            seq = outs; width = dirs * hid;
        }
        return (seq, finals);
    }

    // Output, then every h_n block followed by every c_n block; the initial states are h0 and c0 [layers * D, N, H] or zeros.
    static (double[] Output, double[][] H, double[][] C) LstmSeqRef(LSTM m, double[] x, int len, int n, double[]? h0 = null, double[]? c0 = null)
    {
        var (y, s) = SeqRef(m, x, len, n, 2, (xt, st, width, w) => { var (h, c) = LstmRef(xt, st[0], st[1], n, width, m.HiddenSize, w); return [h, c]; },
            h0 is null ? null : [h0, c0!]);
        int k = s.Length / 2;
        return (y, s[..k], s[k..]);
    }

    static (double[] Output, double[][] H) GruSeqRef(GRU m, double[] x, int len, int n, double[]? h0 = null) =>
        SeqRef(m, x, len, n, 1, (xt, st, width, w) => [GruRef(xt, st[0], n, width, m.HiddenSize, w)], h0 is null ? null : [h0]);

    [Fact]
    public void LSTM_sequence_matches_transcription_in_every_layout()
    {
        var lstm = new LSTM(3, 4, numLayers: 2, generator: new Generator(20), dtype: F64);
        Assert.Equal(["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"],
            lstm.NamedParameters().Select(p => p.Name).ToArray());
        Assert.Equal(new Shape(16, 4), lstm.WeightIh[1].Shape);
        var x = R([5, 2, 3], 21, -2, 2);
        var (eo, eh, ec) = LstmSeqRef(lstm, x.ToArray<double>(), 5, 2);
        var (y, (h, c)) = lstm.Forward(x);
        Assert.Equal(new Shape(5, 2, 4), y.Shape);
        Assert.Equal(new Shape(2, 2, 4), h.Shape);
        Close.Check(eo, y.ToArray<double>(), 1e-12, 1e-14, "lstm output");
        Close.Check(eh[0].Concat(eh[1]).ToArray(), h.ToArray<double>(), 1e-12, 1e-14, "lstm h_n");
        Close.Check(ec[0].Concat(ec[1]).ToArray(), c.ToArray<double>(), 1e-12, 1e-14, "lstm c_n");

        var bf = new LSTM(3, 4, numLayers: 2, batchFirst: true, generator: new Generator(20), dtype: F64);
        var (yb, (hb, _)) = bf.Forward(x.Transpose(0, 1).Contiguous());
        Assert.Equal(new Shape(2, 5, 4), yb.Shape);
        Close.Check(y.Transpose(0, 1), yb, 1e-12, 1e-14, "batch first output");
        Close.Check(h, hb, 1e-12, 1e-14, "batch first h_n (layers first as in PyTorch)");

        var one = x.Narrow(1, 1, 1).Squeeze(1);
        var (yu, (hu, cu)) = lstm.Forward(one);
        Assert.Equal(new Shape(5, 4), yu.Shape);
        Assert.Equal(new Shape(2, 4), hu.Shape);
        Close.Check(y.Narrow(1, 1, 1).Squeeze(1), yu, 1e-12, 1e-14, "unbatched output");
        Close.Check(c.Narrow(1, 1, 1).Squeeze(1), cu, 1e-12, 1e-14, "unbatched c_n");

        // Continuing from the final state equals running the concatenated sequence.
        var x2 = R([3, 2, 3], 22, -2, 2);
        var (yc, _) = lstm.Forward(x2, (h, c));
        var (yall, _) = lstm.Forward(Tensor.Concat([x, x2], 0));
        Close.Check(yall.Narrow(0, 5, 3), yc, 1e-12, 1e-14, "state carried over");
    }

    [Fact]
    public void GRU_sequence_matches_transcription_in_every_layout()
    {
        var gru = new GRU(3, 4, numLayers: 3, batchFirst: true, generator: new Generator(30), dtype: F64);
        var x = R([2, 6, 3], 31, -2, 2);
        var (eo, eh) = GruSeqRef(gru, x.Transpose(0, 1).Contiguous().ToArray<double>(), 6, 2);
        var (y, h) = gru.Forward(x);
        Assert.Equal(new Shape(2, 6, 4), y.Shape);
        Assert.Equal(new Shape(3, 2, 4), h.Shape);
        Close.Check(eo, y.Transpose(0, 1).Contiguous().ToArray<double>(), 1e-12, 1e-14, "gru output");
        Close.Check(eh.SelectMany(v => v).ToArray(), h.ToArray<double>(), 1e-12, 1e-14, "gru h_n");
        var (yu, hu) = gru.Forward(x.Narrow(0, 0, 1).Squeeze(0));
        Assert.Equal(new Shape(6, 4), yu.Shape);
        Assert.Equal(new Shape(3, 4), hu.Shape);
        Close.Check(y.Narrow(0, 0, 1).Squeeze(0), yu, 1e-12, 1e-14, "unbatched output");
    }

    [Fact]
    public void Sequences_pass_gradcheck_and_drop_between_layers_only_in_training()
    {
        var lstm = new LSTM(2, 3, numLayers: 2, generator: new Generator(40), dtype: F64);
        var x = R([3, 2, 2], 41, -2, 2);
        Input(v => lstm.Forward(v).Output, x, "lstm sequence input");
        Parameters(lstm, () => lstm.Forward(x).State.C, "lstm sequence");
        var gru = new GRU(2, 3, numLayers: 2, generator: new Generator(42), dtype: F64);
        Input(v => gru.Forward(v).Output, x, "gru sequence input");
        Parameters(gru, () => gru.Forward(x).Output, "gru sequence");

        var dropped = new GRU(2, 3, numLayers: 2, dropout: 0.5, generator: new Generator(42), dtype: F64);
        var (yTrain, _) = dropped.Forward(x);
        Assert.NotEqual(gru.Forward(x).Output.ToArray<double>(), yTrain.ToArray<double>());
        dropped.Eval();
        Assert.Equal(gru.Forward(x).Output.ToArray<double>(), dropped.Forward(x).Output.ToArray<double>());
        // One layer has no layer after it to drop into, so dropout changes nothing.
        var single = new GRU(2, 3, dropout: 0.5, generator: new Generator(43), dtype: F64);
        var plain = new GRU(2, 3, generator: new Generator(43), dtype: F64);
        Assert.Equal(plain.Forward(x).Output.ToArray<double>(), single.Forward(x).Output.ToArray<double>());
    }

    [Theory]
    [InlineData(DType.Float64)]
    [InlineData(DType.Float32)]
    public void Fused_gate_kernels_match_the_reference_and_the_composed_ops(DType dtype)
    {
        // Pre-activations out to +-6 reach both branches of the kernel's sigmoid and its saturation.
        int n = 5, hid = 7;
        var a = R([n, 4 * hid], 50, -6, 6).To(dtype); var c = R([n, hid], 51, -3, 3).To(dtype);
        var x = R([n, 3 * hid], 52, -6, 6).To(dtype); var m = R([n, 3 * hid], 53, -6, 6).To(dtype); var h = R([n, hid], 54).To(dtype);
        var (rtol, atol) = Close.For(dtype, 4);
        double[] ad = a.ToDoubleArray(), cd = c.ToDoubleArray(), xd = x.ToDoubleArray(), md = m.ToDoubleArray(), hd = h.ToDoubleArray();
        var hc = RnnMath.LstmFused(a, c).ToDoubleArray();
        var gy = RnnMath.GruFused(x, m, h).ToDoubleArray();
        for (int r = 0; r < n; r++)
        {
            var (eh, ec) = Kiln.Kernels.Reference.LstmGates(ad.AsSpan(r * 4 * hid, 4 * hid), cd.AsSpan(r * hid, hid));
            Close.Check(eh, hc.AsSpan(r * hid, hid), rtol, atol, $"lstm h' row {r}");
            Close.Check(ec, hc.AsSpan((n + r) * hid, hid), rtol, atol, $"lstm c' row {r}");
            var e = Kiln.Kernels.Reference.GruGates(xd.AsSpan(r * 3 * hid, 3 * hid), md.AsSpan(r * 3 * hid, 3 * hid), hd.AsSpan(r * hid, hid));
            Close.Check(e, gy.AsSpan(r * hid, hid), rtol, atol, $"gru row {r}");
        }
        var (ch, cc) = LstmComposed(a, c);
        Close.Check(Tensor.Stack([ch, cc], 0).ToDoubleArray(), hc, rtol, atol, "lstm composed");
        Close.Check(GruComposed(x, m, h).ToDoubleArray(), gy, rtol, atol, "gru composed");
    }

    public static IEnumerable<object[]> DeviceDtype => from d in Devices.All from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    [Theory, MemberData(nameof(DeviceDtype))]
    public void Fused_gate_kernels_match_the_reference_on_every_device(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        var gen = from rows in Gen.Choose(0, 6) from hid in Gen.Choose(0, 9)
                  from va in TensorGen.View from vc in TensorGen.View from seed in TensorGen.Seed select (rows, hid, va, vc, seed);
        Props.Check(dev, gen, t =>
        {
            var (rows, hid, va, vc, seed) = t;
            // Pre-activations out to +-6 reach both branches of the sigmoid and the saturation of tanh.
            var a = TensorGen.Make([rows, 4 * hid], va, seed, dtype, dev, -6, 6);
            var c = TensorGen.Make([rows, hid], vc, seed + 1, dtype, dev);
            var x = TensorGen.Make([rows, 3 * hid], vc, seed + 2, dtype, dev, -6, 6);
            var m = TensorGen.Make([rows, 3 * hid], va, seed + 3, dtype, dev, -6, 6);
            var hc = RnnMath.LstmFused(a, c);
            var gy = RnnMath.GruFused(x, m, c);
            Assert.Equal(new Shape(2, rows, hid), hc.Shape);
            Assert.Equal(new Shape(rows, hid), gy.Shape);
            Assert.Equal(dev, hc.Device);
            double[] ad = a.ToDoubleArray(), cd = c.ToDoubleArray(), xd = x.ToDoubleArray(), md = m.ToDoubleArray();
            double[] hcd = hc.ToDoubleArray(), gyd = gy.ToDoubleArray();
            var (rtol, atol) = Close.For(dtype, 4);
            for (int r = 0; r < rows; r++)
            {
                var (eh, ec) = Kiln.Kernels.Reference.LstmGates(ad.AsSpan(r * 4 * hid, 4 * hid), cd.AsSpan(r * hid, hid));
                Close.Check(eh, hcd.AsSpan(r * hid, hid), rtol, atol, $"lstm h' row {r}");
                Close.Check(ec, hcd.AsSpan((rows + r) * hid, hid), rtol, atol, $"lstm c' row {r}");
                var e = Kiln.Kernels.Reference.GruGates(xd.AsSpan(r * 3 * hid, 3 * hid), md.AsSpan(r * 3 * hid, 3 * hid), cd.AsSpan(r * hid, hid));
                Close.Check(e, gyd.AsSpan(r * hid, hid), rtol, atol, $"gru row {r}");
            }
        });
    }

    [Theory, MemberData(nameof(DeviceDtype))]
    public void Bidirectional_layers_run_on_every_device(string device, DType dtype)
    {
        var dev = Devices.Parse(device);
        var (rtol, atol) = Close.For(dtype, 16);
        var lstm = new LSTM(3, 4, numLayers: 2, bidirectional: true, generator: new Generator(110), dtype: dtype, device: dev);
        var x = R([3, 2, 3], 111, -2, 2).To(dtype);
        var (eo, eh, ec) = LstmSeqRef(lstm, x.ToDoubleArray(), 3, 2);
        var (y, (h, c)) = lstm.Forward(x.To(dev));
        Assert.Equal(dev, y.Device);
        Close.Check(eo, y.ToDoubleArray(), rtol, atol, "lstm output");
        Close.Check(eh.SelectMany(v => v).ToArray(), h.ToDoubleArray(), rtol, atol, "lstm h_n");
        Close.Check(ec.SelectMany(v => v).ToArray(), c.ToDoubleArray(), rtol, atol, "lstm c_n");
        var gru = new GRU(3, 4, numLayers: 2, bidirectional: true, generator: new Generator(112), dtype: dtype, device: dev);
        var (go, gh) = GruSeqRef(gru, x.ToDoubleArray(), 3, 2);
        var (gy, ghn) = gru.Forward(x.To(dev));
        Close.Check(go, gy.ToDoubleArray(), rtol, atol, "gru output");
        Close.Check(gh.SelectMany(v => v).ToArray(), ghn.ToDoubleArray(), rtol, atol, "gru h_n");
    }

    [Fact]
    public void Fused_gate_backward_passes_gradcheck_and_differentiates_again()
    {
        int n = 3, hid = 4;
        var a = R([n, 4 * hid], 60, -2, 2); var c = R([n, hid], 61);
        var x = R([n, 3 * hid], 62, -2, 2); var m = R([n, 3 * hid], 63, -2, 2); var h = R([n, hid], 64);
        var r = GradCheck.Run(v => RnnMath.LstmFused(v[0], v[1]), [a, c]);
        Assert.True(r.Passed, $"lstm gates: {r}");
        r = GradCheck.Run(v => RnnMath.GruFused(v[0], v[1], v[2]), [x, m, h]);
        Assert.True(r.Passed, $"gru gates: {r}");
        // The backward is made of tensor ops, so Hessian-vector products match the composed ops'.
        var da = R(a.Shape, 65);
        var fused = Autograd.Hvp(v => RnnMath.LstmFused(v, c).Tanh().Sum(), a, da);
        var composed = Autograd.Hvp(v => { var (hh, cc) = LstmComposed(v, c); return Tensor.Stack([hh, cc], 0).Tanh().Sum(); }, a, da);
        Close.Check(composed, fused, 1e-12, 1e-14, "lstm hessian-vector product");
        var dm = R(m.Shape, 66);
        Close.Check(Autograd.Hvp(v => GruComposed(x, v, h).Tanh().Sum(), m, dm), Autograd.Hvp(v => RnnMath.GruFused(x, v, h).Tanh().Sum(), m, dm), 1e-12, 1e-14, "gru hessian-vector product");
    }

    [Fact]
    public void Bidirectional_LSTM_matches_transcription_of_both_directions()
    {
        var lstm = new LSTM(3, 4, numLayers: 2, bidirectional: true, generator: new Generator(70), dtype: F64);
        Assert.Equal(2, lstm.NumDirections);
        // Layer 1 reads both directions' features of layer 0.
        Assert.Equal(new Shape(16, 8), lstm.WeightIh[2].Shape);
        Assert.Equal(new Shape(16, 4), lstm.WeightHh[3].Shape);
        var x = R([5, 2, 3], 71, -2, 2);
        var (eo, eh, ec) = LstmSeqRef(lstm, x.ToArray<double>(), 5, 2);
        var (y, (h, c)) = lstm.Forward(x);
        Assert.Equal(new Shape(5, 2, 8), y.Shape);
        Assert.Equal(new Shape(4, 2, 4), h.Shape);
        Assert.Equal(new Shape(4, 2, 4), c.Shape);
        Close.Check(eo, y.ToArray<double>(), 1e-12, 1e-14, "bidirectional lstm output");
        Close.Check(eh.SelectMany(v => v).ToArray(), h.ToArray<double>(), 1e-12, 1e-14, "bidirectional lstm h_n");
        Close.Check(ec.SelectMany(v => v).ToArray(), c.ToArray<double>(), 1e-12, 1e-14, "bidirectional lstm c_n");
        // The reverse direction's final h is its output at step 0, the forward one's its output at the last step.
        Close.Check(y.Narrow(0, 0, 1).Squeeze(0).Narrow(-1, 4, 4), h.Narrow(0, 3, 1).Squeeze(0), 0, 0, "reverse h_n is the output at step 0");
        Close.Check(y.Narrow(0, 4, 1).Squeeze(0).Narrow(-1, 0, 4), h.Narrow(0, 2, 1).Squeeze(0), 0, 0, "forward h_n is the output at the last step");

        var bf = new LSTM(3, 4, numLayers: 2, batchFirst: true, bidirectional: true, generator: new Generator(70), dtype: F64);
        var (yb, (hb, _)) = bf.Forward(x.Transpose(0, 1).Contiguous());
        Assert.Equal(new Shape(2, 5, 8), yb.Shape);
        Close.Check(y.Transpose(0, 1), yb, 1e-12, 1e-14, "batch first output");
        Close.Check(h, hb, 1e-12, 1e-14, "batch first h_n");
        var (yu, (hu, _)) = lstm.Forward(x.Narrow(1, 1, 1).Squeeze(1));
        Assert.Equal(new Shape(5, 8), yu.Shape);
        Assert.Equal(new Shape(4, 4), hu.Shape);
        Close.Check(y.Narrow(1, 1, 1).Squeeze(1), yu, 1e-12, 1e-14, "unbatched output");

        // Given initial states reach each layer and direction at index layer * 2 + direction.
        var h0 = R([4, 2, 4], 72); var c0 = R([4, 2, 4], 73);
        var (so, sh, sc) = LstmSeqRef(lstm, x.ToArray<double>(), 5, 2, h0.ToArray<double>(), c0.ToArray<double>());
        var (ys, (hs, cs)) = lstm.Forward(x, (h0, c0));
        Close.Check(so, ys.ToArray<double>(), 1e-12, 1e-14, "output from given states");
        Close.Check(sh.SelectMany(v => v).ToArray(), hs.ToArray<double>(), 1e-12, 1e-14, "h_n from given states");
        Close.Check(sc.SelectMany(v => v).ToArray(), cs.ToArray<double>(), 1e-12, 1e-14, "c_n from given states");
        var bad = Assert.Throws<ShapeMismatchException>(() => lstm.Forward(x, (R([2, 2, 4], 74), R([2, 2, 4], 75))));
        Assert.Contains("[4, 2, 4]", bad.Message);
    }

    [Fact]
    public void Bidirectional_GRU_matches_transcription_of_both_directions()
    {
        var gru = new GRU(3, 4, numLayers: 3, batchFirst: true, bidirectional: true, generator: new Generator(80), dtype: F64);
        var x = R([2, 6, 3], 81, -2, 2);
        var (eo, eh) = GruSeqRef(gru, x.Transpose(0, 1).Contiguous().ToArray<double>(), 6, 2);
        var (y, h) = gru.Forward(x);
        Assert.Equal(new Shape(2, 6, 8), y.Shape);
        Assert.Equal(new Shape(6, 2, 4), h.Shape);
        Close.Check(eo, y.Transpose(0, 1).Contiguous().ToArray<double>(), 1e-12, 1e-14, "bidirectional gru output");
        Close.Check(eh.SelectMany(v => v).ToArray(), h.ToArray<double>(), 1e-12, 1e-14, "bidirectional gru h_n");
        var h0 = R([6, 2, 4], 82);
        var (so, sh) = GruSeqRef(gru, x.Transpose(0, 1).Contiguous().ToArray<double>(), 6, 2, h0.ToArray<double>());
        var (ys, hs) = gru.Forward(x, h0);
        Close.Check(so, ys.Transpose(0, 1).Contiguous().ToArray<double>(), 1e-12, 1e-14, "output from given state");
        Close.Check(sh.SelectMany(v => v).ToArray(), hs.ToArray<double>(), 1e-12, 1e-14, "h_n from given state");
    }

    [Fact]
    public void Bidirectional_layers_pass_gradcheck()
    {
        var lstm = new LSTM(2, 3, numLayers: 2, bidirectional: true, generator: new Generator(90), dtype: F64);
        var x = R([3, 2, 2], 91, -2, 2);
        var h0 = R([4, 2, 3], 92); var c0 = R([4, 2, 3], 93);
        var r = GradCheck.Run(v => { var (y, (h, c)) = lstm.Forward(v[0], (v[1], v[2])); return Tensor.Concat([y.Reshape(-1), h.Reshape(-1), c.Reshape(-1)], 0); }, [x, h0, c0]);
        Assert.True(r.Passed, $"bidirectional lstm inputs and states: {r}");
        Parameters(lstm, () => { var (y, (h, c)) = lstm.Forward(x); return Tensor.Concat([y.Reshape(-1), h.Reshape(-1), c.Reshape(-1)], 0); }, "bidirectional lstm");
        var gru = new GRU(2, 3, numLayers: 2, bidirectional: true, generator: new Generator(94), dtype: F64);
        r = GradCheck.Run(v => { var (y, h) = gru.Forward(v[0], v[1]); return Tensor.Concat([y.Reshape(-1), h.Reshape(-1)], 0); }, [x, h0]);
        Assert.True(r.Passed, $"bidirectional gru inputs and state: {r}");
        Parameters(gru, () => { var (y, h) = gru.Forward(x); return Tensor.Concat([y.Reshape(-1), h.Reshape(-1)], 0); }, "bidirectional gru");
    }

    [Fact]
    public void Bidirectional_layers_load_PyTorch_named_state()
    {
        // torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True).state_dict().keys(), in torch's order.
        string[] keys =
        [
            "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
            "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
            "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
            "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse",
        ];
        Shape[] shapes = [new(16, 3), new(16, 4), new(16), new(16), new(16, 3), new(16, 4), new(16), new(16),
                          new(16, 8), new(16, 4), new(16), new(16), new(16, 8), new(16, 4), new(16), new(16)];
        var lstm = new LSTM(3, 4, numLayers: 2, bidirectional: true, generator: new Generator(100), dtype: F64);
        Assert.Equal(keys, lstm.NamedParameters().Select(p => p.Name).ToArray());
        Assert.Equal(shapes, lstm.NamedParameters().Select(p => p.Parameter.Shape).ToArray());
        var state = keys.Select((k, i) => (k, R(shapes[i], 200 + (ulong)i, -0.5, 0.5))).ToDictionary(p => p.k, p => p.Item2);
        var (missing, unexpected) = lstm.LoadStateDict(state);
        Assert.Empty(missing); Assert.Empty(unexpected);
        Assert.Equal(state["weight_ih_l1_reverse"].ToArray<double>(), lstm.WeightIh[3].Value.ToArray<double>());
        Assert.Equal(state["bias_hh_l0_reverse"].ToArray<double>(), lstm.BiasHh![1].Value.ToArray<double>());
        var x = R([4, 2, 3], 300, -2, 2);
        var (eo, _, _) = LstmSeqRef(lstm, x.ToArray<double>(), 4, 2);
        Close.Check(eo, lstm.Forward(x).Output.ToArray<double>(), 1e-12, 1e-14, "output with loaded state");

        // torch.nn.GRU(3, 4, bidirectional=True, bias=False) has the weights only.
        var gru = new GRU(3, 4, bias: false, bidirectional: true, dtype: F64);
        Assert.Equal(["weight_ih_l0", "weight_hh_l0", "weight_ih_l0_reverse", "weight_hh_l0_reverse"], gru.NamedParameters().Select(p => p.Name).ToArray());
        Assert.Equal(new Shape(12, 3), gru.WeightIh[1].Shape);
    }

    [Fact]
    public void Recurrent_layers_reject_bad_input()
    {
        var cell = new LSTMCell(3, 4);
        Assert.Equal("input", Assert.Throws<ArgumentException>(() => cell.Forward(Tensor.Zeros(2, 2, 3))).ParamName);
        Assert.Contains("last dimension must be 3", Assert.Throws<ShapeMismatchException>(() => cell.Forward(Tensor.Zeros(2, 5))).Message);
        var st = Assert.Throws<ShapeMismatchException>(() => cell.Forward(Tensor.Zeros(2, 3), (Tensor.Zeros(2, 4), Tensor.Zeros(3, 4))));
        Assert.Equal("c", st.ParamName);
        Assert.Contains("[3, 4]", st.Message);
        Assert.Throws<ShapeMismatchException>(() => new GRUCell(3, 4).Forward(Tensor.Zeros(3), Tensor.Zeros(1, 4)));
        var dt = Assert.Throws<ArgumentException>(() => new GRUCell(3, 4).Forward(Tensor.Zeros(2, 3), Tensor.Zeros([2, 4], DType.Float64)));
        Assert.Equal("h", dt.ParamName);
        Assert.Contains("Float64", dt.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GRUCell(0, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LSTMCell(3, 0));

        var lstm = new LSTM(3, 4, numLayers: 2);
        Assert.Equal("input", Assert.Throws<ArgumentException>(() => lstm.Forward(Tensor.Zeros(3))).ParamName);
        Assert.Contains("[5, 2, 4]", Assert.Throws<ShapeMismatchException>(() => lstm.Forward(Tensor.Zeros(5, 2, 4))).Message);
        var h = Assert.Throws<ShapeMismatchException>(() => lstm.Forward(Tensor.Zeros(5, 2, 3), (Tensor.Zeros(1, 2, 4), Tensor.Zeros(2, 2, 4))));
        Assert.Equal("h", h.ParamName);
        Assert.Contains("no time steps", Assert.Throws<ArgumentException>(() => new GRU(3, 4).Forward(Tensor.Zeros(0, 2, 3))).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new GRU(3, 4, numLayers: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LSTM(3, 4, dropout: 1));
    }
}
