using Kiln.Methods.Generative;
using Xunit;

namespace Kiln.Tests.Methods;

/// <summary>
/// Generative and encoding methods (ResBit, orthogonal MBAT) against float64 transcriptions of their papers' equations.
/// </summary>
public class GenerativeTests
{
    // ------------------------------------------------------------------ ResBit

    // The paper's construction written out: greedy blocks of ⌊log₂(R + 1)⌋ bits, then category n filled block by block.
    static List<int> RefBlocks(int c)
    {
        var ks = new List<int>();
        for (int rest = c - 1; rest > 0;)
        {
            int k = (int)Math.Floor(Math.Log2(rest + 1) + 1e-12);
            ks.Add(k);
            rest -= (int)Math.Pow(2, k) - 1;
        }
        return ks;
    }

    static double[] RefCode(int n, List<int> ks)
    {
        var code = new List<double>();
        foreach (int k in ks)
        {
            int cap = (int)Math.Pow(2, k) - 1, v = Math.Min(n, cap);
            n -= v;
            for (int b = k - 1; b >= 0; b--) code.Add((v / (int)Math.Pow(2, b)) % 2 == 1 ? 1 : -1);
        }
        return [.. code];
    }

    [Fact]
    public void ResBit_matches_its_construction_and_round_trips()
    {
        var rng = new Random(11);
        foreach (int c in new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 100, 255, 256, 1000 }.Concat(Enumerable.Range(0, 8).Select(_ => rng.Next(2, 5000))))
        {
            var rb = new ResBit(c);
            var ks = RefBlocks(c);
            Assert.Equal(ks, rb.BlockBits);
            Assert.Equal(c - 1, ks.Sum(k => (1 << k) - 1));
            var all = Tensor.FromArray(Enumerable.Range(0, c).Select(i => (long)i).ToArray());
            var code = rb.Encode(all, DType.Float64);
            Assert.Equal(new Shape(c, ks.Sum()), code.Shape);
            var got = code.ToArray<double>();
            for (int n = 0; n < c; n++) Assert.Equal(RefCode(n, ks), got.Skip(n * rb.Width).Take(rb.Width).ToArray());
            // Injective on [0, C): decoding the codes gives every category back exactly.
            Assert.Equal(all.ToArray<long>(), rb.Decode(code).ToArray<long>());
        }
    }

    [Fact]
    public void ResBit_decodes_noisy_and_arbitrary_codes_to_valid_categories()
    {
        var g = new Generator(3);
        foreach (int c in new[] { 3, 6, 37, 300 })
        {
            var rb = new ResBit(c);
            var idx = Tensor.RandInt(new Shape(4, 9), 0, c, g);
            var code = rb.Encode(idx, DType.Float64);
            // Any perturbation below 1 in every bit keeps each bit's sign, so the decoded category is unchanged.
            var noise = Tensor.Rand(code.Shape, g, -0.999, 0.999, DType.Float64);
            Assert.Equal(idx.ToArray<long>(), rb.Decode(code + noise).ToArray<long>());
            // Any real vector decodes into [0, C): the sum of block capacities is C − 1.
            var arbitrary = rb.Decode(Tensor.Randn(new Shape(200, rb.Width), g, dtype: DType.Float64)).ToArray<long>();
            Assert.All(arbitrary, v => Assert.InRange(v, 0, c - 1));
            // Every category is reached by a bit pattern whose decoding is it.
            Assert.Equal(Enumerable.Range(0, c).Select(i => (long)i), rb.Decode(rb.Encode(Tensor.FromArray(Enumerable.Range(0, c).Select(i => (long)i).ToArray()))).ToArray<long>());
        }
    }

    [Fact]
    public void ResBit_degenerate_and_bad_input()
    {
        var one = new ResBit(1);
        Assert.Equal(0, one.Width);
        Assert.Equal(new Shape(3, 0), one.Encode(Tensor.Zeros(new Shape(3), DType.Int64)).Shape);
        Assert.Equal(new long[3], one.Decode(Tensor.Zeros(new Shape(3, 0), DType.Float64)).ToArray<long>());
        var pow = new ResBit(8);
        Assert.Equal([3, 0], [pow.Width, pow.BlockBits.Count - 1]);
        Assert.Equal(new Shape(0, 3), pow.Encode(Tensor.Zeros(new Shape(0), DType.Int64)).Shape);
        Assert.Equal("categories", Assert.Throws<ArgumentOutOfRangeException>(() => new ResBit(0)).ParamName);
        Assert.Contains("index 8", Assert.Throws<ArgumentException>(() => pow.Encode(Tensor.FromArray(new long[] { 1, 8 }))).Message);
        Assert.Contains("Float64", Assert.Throws<ArgumentException>(() => pow.Encode(Tensor.Zeros(new Shape(2), DType.Float64))).Message);
        Assert.Equal("bits", Assert.Throws<ShapeMismatchException>(() => pow.Decode(Tensor.Zeros(new Shape(2, 4), DType.Float64))).ParamName);
        Assert.Contains("NaN", Assert.Throws<ArgumentException>(() => pow.Decode(Tensor.Full(new Shape(3), double.NaN, DType.Float64))).Message);
    }

    // ------------------------------------------------------------------ Orthogonal MBAT

    static double Dot(double[] a, double[] b) { double s = 0; for (int i = 0; i < a.Length; i++) s += a[i] * b[i]; return s; }

    static double[] MatVec(double[] m, double[] v, int d, bool transpose)
    {
        var r = new double[d];
        for (int i = 0; i < d; i++)
            for (int j = 0; j < d; j++) r[i] += (transpose ? m[j * d + i] : m[i * d + j]) * v[j];
        return r;
    }

    [Fact]
    public void Mbat_binding_is_an_exact_invertible_isometry()
    {
        var rng = new Random(5);
        for (int trial = 0; trial < 12; trial++)
        {
            int d = rng.Next(1, 24), n = rng.Next(0, 5);
            var g = new Generator((ulong)trial);
            var m = Mbat.RandomOrthogonal(d, g);
            var md = m.ToArray<double>();
            // MᵀM = I.
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++)
                {
                    double s = 0;
                    for (int k = 0; k < d; k++) s += md[k * d + i] * md[k * d + j];
                    Assert.Equal(i == j ? 1 : 0, s, 1e-12);
                }
            var v = Tensor.Randn(new Shape(n, d), g, dtype: DType.Float64);
            var bound = Mbat.Bind(m, v);
            var back = Mbat.Unbind(m, bound).ToArray<double>();
            var vd = v.ToArray<double>();
            var bd = bound.ToArray<double>();
            for (int r = 0; r < n; r++)
            {
                var row = vd.Skip(r * d).Take(d).ToArray();
                var want = MatVec(md, row, d, transpose: false);
                for (int i = 0; i < d; i++) Assert.Equal(want[i], bd[r * d + i], 1e-12);
                for (int i = 0; i < d; i++) Assert.Equal(row[i], back[r * d + i], 1e-12);
                // Dot products among rows survive binding.
                for (int q = 0; q < n; q++)
                {
                    var other = vd.Skip(q * d).Take(d).ToArray();
                    Assert.Equal(Dot(row, other), Dot(want, MatVec(md, other, d, transpose: false)), 1e-10);
                }
            }
        }
    }

    [Fact]
    public void Mbat_differently_bound_terms_are_nearly_orthogonal_and_recoverable()
    {
        const int d = 256, pairs = 24;
        var g = new Generator(9);
        var roles = Enumerable.Range(0, pairs).Select(_ => Mbat.RandomOrthogonal(d, g)).ToArray();
        var fillers = Tensor.Randn(new Shape(pairs, d), g, dtype: DType.Float64);
        var v = Tensor.Randn(new Shape(d), g, dtype: DType.Float64);
        // cos(M_a v, M_b v) over independent Haar matrices has mean 0 and variance 1/d: the sample of 276 pairs must
        // have its mean within 4 standard errors of 0 and its mean square within 30% of 1/d.
        var bound = roles.Select(m => Mbat.Bind(m, v)).ToArray();
        var cos = new List<double>();
        for (int a = 0; a < pairs; a++)
            for (int b = a + 1; b < pairs; b++) cos.Add(Mbat.Cosine(bound[a], bound[b]).Item());
        Assert.InRange(cos.Average(), -4 / Math.Sqrt(d * cos.Count), 4 / Math.Sqrt(d * cos.Count));
        Assert.InRange(cos.Average(c => c * c) * d, 0.7, 1.3);
        // Same matrix: cosine preserved exactly.
        var u = Tensor.Randn(new Shape(d), g, dtype: DType.Float64);
        Assert.Equal(Mbat.Cosine(u, v).Item(), Mbat.Cosine(Mbat.Bind(roles[0], u), bound[0]).Item(), 1e-12);
        // A bundle Σ M_i f_i of 8 terms answers "filler of role i" by unbinding and taking the most similar of the 24
        // fillers: the filler's own dot product (≈ d) is 6 standard deviations of the cross-talk (≈ √(7d)) from 0.
        const int terms = 8;
        var bundle = Enumerable.Range(0, terms).Select(i => Mbat.Bind(roles[i], fillers.Narrow(0, i, 1).Squeeze(0))).Aggregate((x, y) => x + y);
        for (int i = 0; i < terms; i++)
            Assert.Equal(i, (int)Mbat.Cosine(fillers, Mbat.Unbind(roles[i], bundle)).ArgMax(0).Item());
    }

    [Fact]
    public void Mbat_rejects_bad_shapes()
    {
        var m = Mbat.RandomOrthogonal(3, new Generator(1));
        Assert.Equal("vectors", Assert.Throws<ShapeMismatchException>(() => Mbat.Bind(m, Tensor.Zeros(new Shape(2, 4), DType.Float64))).ParamName);
        Assert.Equal("bound", Assert.Throws<ShapeMismatchException>(() => Mbat.Unbind(m, Tensor.Zeros(new Shape(4), DType.Float64))).ParamName);
        Assert.Equal("matrix", Assert.Throws<ShapeMismatchException>(() => Mbat.Bind(Tensor.Zeros(new Shape(3, 2), DType.Float64), Tensor.Zeros(new Shape(3), DType.Float64))).ParamName);
        Assert.Equal("dim", Assert.Throws<ArgumentOutOfRangeException>(() => Mbat.RandomOrthogonal(0, new Generator(1))).ParamName);
    }
}
