using FsCheck.Fluent;
using Kiln.Kernels;
using Kiln.Ops;
using Kiln.Tests.TestKit;
using Xunit;

namespace Kiln.Tests;

/// <summary>
/// einsum against direct summation in float64 (random equations with ellipses, diagonals, broadcast extents of 1, empty
/// extents, implicit outputs, strided operands; every device), its path against a brute-force search over every
/// contraction order, its gradients by GradCheck, integers, and the malformed equations it must reject.
/// </summary>
public class EinsumTests
{
    const int Ellipsis = 1000;

    /// <summary>A random equation, its operands' shapes and labels, and the output labels it implies, built label by label.</summary>
    sealed record Case(string Equation, int[][] Shapes, int[][] Labels, int[] Output, Dictionary<int, int> Sizes, int Seed)
    {
        public override string ToString() => $"'{Equation}' shapes {string.Join(" ", Shapes.Select(s => $"[{string.Join(",", s)}]"))} seed {Seed}";
    }

    static Case Draw(int seed)
    {
        var rng = new Random(seed);
        int nLetters = 1 + rng.Next(5), ellRank = rng.Next(4) == 0 ? 1 + rng.Next(2) : 0;
        var sizes = new Dictionary<int, int>();
        for (int i = 0; i < nLetters; i++) sizes['a' + i] = rng.Next(12) == 0 ? 0 : 1 + rng.Next(4);
        for (int k = 0; k < ellRank; k++) sizes[Ellipsis + k] = 1 + rng.Next(3);
        int ops = 1 + rng.Next(3);
        var terms = new List<string>(); var labels = new List<int[]>(); var shapes = new List<int[]>();
        for (int o = 0; o < ops; o++)
        {
            var ls = Enumerable.Range(0, nLetters).Where(_ => rng.Next(2) == 0).Select(i => 'a' + i).ToList();
            if (ls.Count > 0 && rng.Next(5) == 0) ls.Add(ls[rng.Next(ls.Count)]);   // a diagonal
            ls = [.. ls.OrderBy(_ => rng.Next())];
            var term = new string([.. ls.Select(l => (char)l)]);
            int[] full = [.. ls];
            if (ellRank > 0 && rng.Next(3) > 0)
            {
                int e = rng.Next(ellRank + 1), at = rng.Next(ls.Count + 1);
                term = term[..at] + "..." + term[at..];
                full = [.. ls.Take(at), .. Enumerable.Range(0, e).Select(k => Ellipsis + e - 1 - k), .. ls.Skip(at)];
            }
            terms.Add(term); labels.Add(full);
            // An operand's extent is its label's, or 1 to broadcast (never for a repeated label: a diagonal needs both).
            shapes.Add([.. full.Select(l => full.Count(m => m == l) == 1 && rng.Next(5) == 0 ? 1 : sizes[l])]);
        }
        var present = labels.SelectMany(l => l).Distinct().ToArray();
        var presentEll = present.Where(l => l >= Ellipsis).OrderDescending().ToArray();
        string eq = string.Join(",", terms);
        int[] output;
        if (rng.Next(3) == 0)
            output = [.. presentEll, .. labels.SelectMany(l => l).Where(l => l < Ellipsis).GroupBy(l => l).Where(g => g.Count() == 1).Select(g => g.Key).Order()];
        else
        {
            var letters = present.Where(l => l < Ellipsis && rng.Next(2) == 0).OrderBy(_ => rng.Next()).ToList();
            bool withEll = presentEll.Length > 0 && rng.Next(3) > 0;
            int at = rng.Next(letters.Count + 1);
            // The output's ellipsis covers as many dims as the widest input ellipsis.
            int width = presentEll.Length == 0 ? 0 : presentEll.Max() - Ellipsis + 1;
            output = withEll ? [.. letters.Take(at), .. Enumerable.Range(0, width).Select(k => Ellipsis + width - 1 - k), .. letters.Skip(at)] : [.. letters];
            eq += "->" + new string([.. letters.Take(at).Select(l => (char)l)]) + (withEll ? "..." : "") + new string([.. letters.Skip(at).Select(l => (char)l)]);
        }
        // A label every operand gives extent 1 has size 1.
        var used = present.ToDictionary(l => l, l => labels.Zip(shapes).SelectMany(p => p.First.Zip(p.Second)).Where(q => q.First == l).Any(q => q.Second != 1) ? sizes[l] : 1);
        return new Case(eq, [.. shapes], [.. labels], output, used, seed);
    }

    [Theory, MemberData(nameof(Devices.Data), MemberType = typeof(Devices))]
    public void Random_equations_match_direct_summation(string deviceName)
    {
        var device = Devices.Parse(deviceName);
        Props.Check(device, TensorGen.Seed, seed =>
        {
            var c = Draw(seed);
            foreach (var dt in new[] { DType.Float32, DType.Float64 })
            {
                var views = new[] { TensorGen.ViewKind.Contiguous, TensorGen.ViewKind.Permuted, TensorGen.ViewKind.Sliced };
                var xs = c.Shapes.Select((s, i) => TensorGen.Make(s, views[(seed + i) % 3], seed + i, dt, device, -1, 1)).ToArray();
                var data = xs.Select(x => x.Contiguous().ToDoubleArray()).ToArray();
                var expected = Reference.Einsum(c.Labels, c.Shapes, data, c.Output, c.Sizes);
                var magnitude = Reference.Einsum(c.Labels, c.Shapes, [.. data.Select(d => d.Select(Math.Abs).ToArray())], c.Output, c.Sizes);
                var y = Tensor.Einsum(c.Equation, xs);
                Assert.Equal(c.Output.Select(l => c.Sizes[l]).ToArray(), y.Shape.ToArray());
                Assert.Equal(device, y.Device);
                long summed = c.Sizes.Where(kv => !c.Output.Contains(kv.Key)).Aggregate(1L, (p, kv) => p * kv.Value);
                var r = Tolerance.Bound().Check(expected, y.ToDoubleArray(), dt, null, c.ToString(), magnitude, (int)summed + xs.Length - 1);
                Assert.True(r.Pass, $"{c} {dt}: {r}");
            }
        });
    }

    [Fact]
    public void Common_equations_agree_with_the_ops_they_name()
    {
        var g = new Generator(3);
        var a = Tensor.Rand(new Shape(3, 4), g, dtype: DType.Float64);
        var b = Tensor.Rand(new Shape(4, 5), g, dtype: DType.Float64);
        var sq = Tensor.Rand(new Shape(4, 4), g, dtype: DType.Float64);
        var batch = Tensor.Rand(new Shape(2, 3, 4), g, dtype: DType.Float64);
        var v = Tensor.Rand(new Shape(4), g, dtype: DType.Float64);
        Close.Check(a.MatMul(b), Tensor.Einsum("ij,jk->ik", a, b), 1e-14, 1e-14, "matmul");
        Close.Check(a.MatMul(b), Tensor.Einsum("ij,jk", a, b), 1e-14, 1e-14, "implicit matmul");
        Close.Check(a.T.Contiguous(), Tensor.Einsum("ba", a), 0, 0, "implicit output is alphabetical");
        Close.Check(a.T.Contiguous(), Tensor.Einsum("ij->ji", a), 0, 0, "transpose");
        Close.Check(batch.Transpose(-1, -2).Contiguous(), Tensor.Einsum("...ij->...ji", batch), 0, 0, "batched transpose");
        var sd = sq.ToDoubleArray();
        Assert.Equal(sd[0] + sd[5] + sd[10] + sd[15], Tensor.Einsum("ii", sq).Item<double>(), 1e-14);
        Assert.Equal(new[] { sd[0], sd[5], sd[10], sd[15] }, Tensor.Einsum("ii->i", sq).ToDoubleArray());
        Close.Check(v.Outer(v), Tensor.Einsum("i,j->ij", v, v), 0, 0, "outer");
        Close.Check(a.Sum(), Tensor.Einsum("ij->", a), 1e-14, 1e-14, "total");
        Close.Check(batch.MatMul(b), Tensor.Einsum("bij,jk->bik", batch, b), 1e-14, 1e-14, "batched");
        Close.Check(a.MatMul(v).Dot(a.Sum(1)), Tensor.Einsum("ij,j,ik->", a, v, a), 1e-13, 1e-13, "three operands");
        Close.Check(a * a, Tensor.Einsum("ij,ij->ij", a, a), 0, 0, "hadamard");
    }

    [Fact]
    public void Empty_extents_give_zeros_or_empty_results()
    {
        var a = Tensor.Zeros(new Shape(3, 0), DType.Float32);
        var b = Tensor.Ones(new Shape(0, 2), DType.Float32);
        var y = Tensor.Einsum("ij,jk->ik", a, b);
        Assert.Equal(new Shape(3, 2), y.Shape);
        Assert.All(y.ToDoubleArray(), x => Assert.Equal(0.0, x));
        Assert.Equal(new Shape(0, 3), Tensor.Einsum("ij->ji", a).Shape);
    }

    [Fact]
    public void Integers_are_exact()
    {
        var a = Tensor.FromArray(new long[] { 1, 2, 3, 4, 5, 6 }).Reshape(2, 3);
        var b = Tensor.FromArray(new long[] { 1_000_000_007, -3, 2 });
        var y = Tensor.Einsum("ij,j->i", a, b);
        Assert.Equal(DType.Int64, y.DType);
        Assert.Equal(new[] { 1_000_000_007L - 6 + 6, 4 * 1_000_000_007L - 15 + 12 }, y.ToArray<long>());
    }

    [Fact]
    public void Gradients_match_finite_differences()
    {
        var g = new Generator(11);
        Tensor R(params int[] s) => Tensor.Rand(new Shape(s), g, -1, 1, DType.Float64).RequiresGrad_();
        foreach (var (eq, xs) in new (string, Tensor[])[]
        {
            ("ij,jk->ik", [R(3, 4), R(4, 2)]),
            ("ii->i", [R(3, 3)]),
            ("iij,jk->ik", [R(2, 2, 3), R(3, 2)]),
            ("...ij,...j->...i", [R(2, 3, 4), R(1, 4)]),
            ("ab,bc,cd,de->ae", [R(2, 3), R(3, 4), R(4, 2), R(2, 3)]),
            ("ij,ij->", [R(3, 4), R(1, 4)]),
            ("bi,bj->bij", [R(2, 3), R(2, 2)]),
        })
        {
            var r = GradCheck.Run(t => Tensor.Einsum(eq, t), xs);
            Assert.True(r.Passed, $"{eq}: {r}");
        }
    }

    // Every contraction order of operands with these labels, by brute force: the least total multiply-adds.
    static double BruteForce(List<int[]> live, HashSet<int> output, Dictionary<int, int> sizes)
    {
        if (live.Count == 1) return 0;
        double best = double.PositiveInfinity;
        for (int a = 0; a < live.Count; a++)
            for (int b = a + 1; b < live.Count; b++)
            {
                var rest = live.Where((_, i) => i != a && i != b).ToList();
                var needed = rest.SelectMany(l => l).Concat(output).ToHashSet();
                var union = live[a].Union(live[b]).ToArray();
                double cost = union.Aggregate(1.0, (p, l) => p * sizes[l]);
                best = Math.Min(best, cost + BruteForce([.. rest, [.. union.Where(needed.Contains)]], output, sizes));
            }
        return best;
    }

    [Fact]
    public void The_path_is_the_cheapest_order_and_beats_left_to_right()
    {
        // A chain whose left-to-right order costs 100x the best one: the big dims must be contracted first.
        var shapes = new[] { new Shape(2, 100), new Shape(100, 100), new Shape(100, 2), new Shape(2, 100) };
        var path = EinsumPath.Of("ab,bc,cd,de->ae", shapes);
        var sizes = new Dictionary<int, int> { ['a'] = 2, ['b'] = 100, ['c'] = 100, ['d'] = 2, ['e'] = 100 };
        Assert.Equal(BruteForce([[.. "ab"], [.. "bc"], [.. "cd"], [.. "de"]], [.. "ae"], sizes), path.MultiplyAdds);
        Assert.Equal(3, path.Steps.Count);
        Assert.True(path.MultiplyAdds < path.NaiveMultiplyAdds / 500, path.ToString());
        Assert.Contains("->", path.ToString());

        var rng = new Random(5);
        for (int trial = 0; trial < 30; trial++)
        {
            int n = 2 + rng.Next(4);
            var ls = Enumerable.Range(0, n).Select(_ => "abcdef".Where(_ => rng.Next(2) == 0).ToArray()).Select(t => t.Length == 0 ? "a".ToCharArray() : t).ToArray();
            var sz = "abcdef".ToDictionary(ch => (int)ch, _ => 1 + rng.Next(9));
            var outLabels = ls.SelectMany(t => t).Distinct().Where(_ => rng.Next(3) == 0).ToArray();
            string eq = string.Join(",", ls.Select(t => new string(t))) + "->" + new string(outLabels);
            var p = EinsumPath.Of(eq, [.. ls.Select(t => new Shape([.. t.Select(ch => sz[ch])]))]);
            // The brute force starts from operands already reduced to the labels needed elsewhere, as einsum does.
            var reduced = ls.Select((t, i) => t.Select(ch => (int)ch).Where(l => outLabels.Contains((char)l) || ls.Where((_, j) => j != i).Any(u => u.Contains((char)l))).Distinct().ToArray()).ToList();
            Assert.Equal(BruteForce(reduced, [.. outLabels.Select(ch => (int)ch)], sz), p.MultiplyAdds, 1e-9);
        }
    }

    [Fact]
    public void Many_operands_take_the_greedy_path_and_stay_correct()
    {
        // 12 operands (past the exhaustive limit): a chain of 2x2 matrices, checked against direct summation.
        var g = new Generator(2);
        var xs = Enumerable.Range(0, 12).Select(_ => Tensor.Rand(new Shape(2, 2), g, -1, 1, DType.Float64)).ToArray();
        string letters = "abcdefghijklm";
        string eq = string.Join(",", Enumerable.Range(0, 12).Select(i => $"{letters[i]}{letters[i + 1]}")) + "->am";
        var p = EinsumPath.Of(eq, [.. xs.Select(x => x.Shape)]);
        Assert.Equal(11, p.Steps.Count);
        var expected = xs.Skip(1).Aggregate(xs[0], (acc, x) => acc.MatMul(x));
        Close.Check(expected, Tensor.Einsum(eq, xs), 1e-13, 1e-13, "chain of 12");
    }

    [Fact]
    public void Malformed_equations_are_rejected_naming_the_problem()
    {
        var m = Tensor.Zeros(new Shape(2, 3));
        var n = Tensor.Zeros(new Shape(4, 5));
        void Throws<TE>(string eq, string fragment, params Tensor[] xs) where TE : Exception
        {
            var e = Assert.Throws<TE>(() => Tensor.Einsum(eq, xs));
            Assert.Contains(fragment, e.Message);
        }
        Throws<ArgumentException>("ij,jk->ik", "2 input term(s) for 1 operand(s)", m);
        Throws<ArgumentException>("ijk->i", "has rank 2", m);
        Throws<ArgumentException>("i->i", "has rank 2", m);
        Throws<ArgumentException>("i1", "'1' is not a subscript", m);
        Throws<ArgumentException>("i.j", "single '...'", m);
        Throws<ArgumentException>("ij->k", "'k' appears in no input", m);
        Throws<ArgumentException>("ij->ii", "more than once", m);
        Throws<ArgumentException>("ij->i->j", "more than one '->'", m);
        Throws<ShapeMismatchException>("ij,jk->ik", "label 'j' has extent 3 in operand 0 and 4 in operand 1", m, n);
        Throws<ShapeMismatchException>("ii->i", "extents 2 and 3", m);
        Assert.Throws<ArgumentException>(() => Tensor.Einsum("ij", []));
        Assert.ThrowsAny<ArgumentException>(() => Tensor.Einsum("ij,ij", m, m.To(DType.Float64)));
    }
}
