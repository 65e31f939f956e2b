using System.Text;

namespace Kiln;

/// <summary>
/// A parsed einsum equation: the label of every operand dim and of every output dim. Letters are labels by their
/// character code; the dims an ellipsis covers get labels <see cref="EllipsisBase"/> + k, k counted from the right, so
/// ellipses of different ranks broadcast right-aligned as in NumPy.
/// </summary>
internal sealed class EinsumEquation
{
    internal const int EllipsisBase = 1000;

    public required string Text { get; init; }
    public required int[][] Inputs { get; init; }
    public required int[] Output { get; init; }
    /// <summary>Each label's size: its extent other than 1 (extents of 1 broadcast, also to 0), or 1.</summary>
    public required Dictionary<int, int> Sizes { get; init; }

    public static string Name(int label) => label >= EllipsisBase ? $"…{label - EllipsisBase}" : ((char)label).ToString();

    /// <summary>The subscripts of one term, letters as written and ellipsis dims as capital Greek letters.</summary>
    public static string Subscripts(IEnumerable<int> labels) =>
        string.Concat(labels.Select(l => l >= EllipsisBase ? ((char)('Α' + l - EllipsisBase)).ToString() : ((char)l).ToString()));

    /// <summary>Parses <paramref name="equation"/> for operands of these shapes (NumPy's and PyTorch's grammar).</summary>
    /// <exception cref="ArgumentException">The equation is malformed or does not fit the operands' ranks.</exception>
    /// <exception cref="ShapeMismatchException">A label has two different extents, neither 1.</exception>
    public static EinsumEquation Parse(string equation, IReadOnlyList<Shape> shapes)
    {
        ArgumentNullException.ThrowIfNull(equation);
        string eq = equation.Replace(" ", "");
        ArgumentException Bad(string why) => new($"einsum: '{equation}': {why}", nameof(equation));
        int arrow = eq.IndexOf("->", StringComparison.Ordinal);
        if (arrow >= 0 && eq.IndexOf("->", arrow + 2, StringComparison.Ordinal) >= 0) throw Bad("more than one '->'");
        string lhs = arrow >= 0 ? eq[..arrow] : eq;
        string[] terms = lhs.Split(',');
        if (terms.Length != shapes.Count)
            throw Bad($"{terms.Length} input term(s) for {shapes.Count} operand(s)");

        var parsed = terms.Select((t, i) => ParseTerm(t, $"operand {i}", Bad)).ToArray();
        int ellipsisRank = 0;
        var inputs = new int[terms.Length][];
        for (int i = 0; i < terms.Length; i++)
        {
            var (before, after, hasEllipsis) = parsed[i];
            int letters = before.Length + after.Length, rank = shapes[i].Rank;
            if (hasEllipsis ? letters > rank : letters != rank)
                throw Bad($"operand {i} has rank {rank} but its term '{terms[i]}' names {letters} dim(s){(hasEllipsis ? " plus an ellipsis" : "")}");
            int covered = rank - letters;
            ellipsisRank = Math.Max(ellipsisRank, covered);
            inputs[i] = [.. before, .. Enumerable.Range(0, covered).Select(k => EllipsisBase + covered - 1 - k), .. after];
        }

        var sizes = new Dictionary<int, int>();
        var firstSeen = new Dictionary<int, (int Operand, int Size)>();
        for (int i = 0; i < inputs.Length; i++)
        {
            var own = new Dictionary<int, int>();
            for (int d = 0; d < inputs[i].Length; d++)
            {
                int l = inputs[i][d], n = shapes[i][d];
                if (own.TryGetValue(l, out int m) && m != n)
                    throw new ShapeMismatchException("einsum", "operands", $"'{equation}': label '{Name(l)}' repeats in operand {i} with extents {m} and {n}; a repeated label reads a diagonal and needs equal extents");
                own[l] = n;
                if (!sizes.TryGetValue(l, out int s)) { sizes[l] = n; firstSeen[l] = (i, n); continue; }
                if (s != n && s != 1 && n != 1)
                    throw new ShapeMismatchException("einsum", "operands", $"'{equation}': label '{Name(l)}' has extent {firstSeen[l].Size} in operand {firstSeen[l].Operand} and {n} in operand {i}");
                if (s == 1 && n != 1) { sizes[l] = n; firstSeen[l] = (i, n); }
            }
        }

        int[] output;
        if (arrow >= 0)
        {
            var (before, after, hasEllipsis) = ParseTerm(eq[(arrow + 2)..], "the output", Bad);
            foreach (int l in before.Concat(after))
                if (!sizes.ContainsKey(l)) throw Bad($"output label '{(char)l}' appears in no input");
            var ell = hasEllipsis ? Enumerable.Range(0, ellipsisRank).Select(k => EllipsisBase + ellipsisRank - 1 - k) : [];
            output = [.. before, .. ell, .. after];
            var dup = output.GroupBy(l => l).FirstOrDefault(g => g.Count() > 1);
            if (dup is not null) throw Bad($"output label '{Name(dup.Key)}' appears more than once");
        }
        else
        {
            // Implicit mode: the ellipsis dims, then the letters that appear exactly once, in alphabetical (ASCII) order.
            var counts = inputs.SelectMany(t => t).Where(l => l < EllipsisBase).GroupBy(l => l).Where(g => g.Count() == 1).Select(g => g.Key).Order();
            output = [.. Enumerable.Range(0, ellipsisRank).Select(k => EllipsisBase + ellipsisRank - 1 - k), .. counts];
        }
        return new EinsumEquation { Text = equation, Inputs = inputs, Output = output, Sizes = sizes };
    }

    static (int[] Before, int[] After, bool Ellipsis) ParseTerm(string term, string what, Func<string, ArgumentException> bad)
    {
        int e = term.IndexOf("...", StringComparison.Ordinal);
        string before = e >= 0 ? term[..e] : term, after = e >= 0 ? term[(e + 3)..] : "";
        int[] Letters(string s) => [.. s.Select(ch => char.IsAsciiLetter(ch) ? ch : throw bad(ch == '.'
            ? $"{what}: '.' must come in a single '...'" : $"{what}: '{ch}' is not a subscript (letters a-z, A-Z and '...')"))];
        return (Letters(before), Letters(after), e >= 0);
    }
}

/// <summary>One pairwise contraction of an einsum path.</summary>
/// <param name="Operands">The two positions in the current operand list that are contracted (both are removed and the result is appended, as in NumPy's einsum_path).</param>
/// <param name="Subscripts">The step as an equation, e.g. "ij,jk->ik" (dims an ellipsis covers print as capital Greek letters).</param>
/// <param name="MultiplyAdds">Multiply-adds of the step: the product of the extents of every label it touches.</param>
public sealed record EinsumStep(int[] Operands, string Subscripts, double MultiplyAdds);

/// <summary>
/// The order in which <see cref="Tensor.Einsum"/> contracts its operands pairwise, chosen to minimise multiply-adds:
/// exhaustively (dynamic programming over operand subsets) for up to <see cref="OptimalLimit"/> operands, greedily
/// beyond (at each step the pair whose result is smallest relative to its inputs). Each step runs as one batched matrix
/// product (or an elementwise product when nothing is summed), so the cost is that of the GEMMs.
/// </summary>
public sealed class EinsumPath
{
    /// <summary>The most operands for which the exhaustive search runs (3^n subset pairs).</summary>
    public const int OptimalLimit = 10;

    internal EinsumPath(EinsumEquation eq, int[][] labels, Tree? tree, IReadOnlyList<EinsumStep> steps)
    {
        Equation = eq.Text;
        Steps = steps;
        Root = tree;
        Labels = labels;
        Parsed = eq;
        double all = eq.Sizes.Values.Aggregate(1.0, (p, n) => p * n);
        NaiveMultiplyAdds = all * Math.Max(1, labels.Length - 1);
        MultiplyAdds = steps.Sum(s => s.MultiplyAdds);
    }

    /// <summary>The equation as given.</summary>
    public string Equation { get; }
    /// <summary>The pairwise contractions, in order; empty for a single operand.</summary>
    public IReadOnlyList<EinsumStep> Steps { get; }
    /// <summary>Multiply-adds of a direct evaluation: every label assignment, one product per extra operand.</summary>
    public double NaiveMultiplyAdds { get; }
    /// <summary>Multiply-adds of the chosen order (the sum over <see cref="Steps"/>).</summary>
    public double MultiplyAdds { get; }

    internal EinsumEquation Parsed { get; }
    internal int[][] Labels { get; }
    internal Tree? Root { get; }

    /// <summary>A contraction tree: a leaf is an operand index, a node contracts its two children down to <see cref="Keep"/>.</summary>
    internal sealed record Tree(int Leaf, Tree? Left, Tree? Right, int[] Keep);

    /// <summary>The path <see cref="Tensor.Einsum"/> takes for operands of these shapes.</summary>
    /// <exception cref="ArgumentException">The equation is malformed or does not fit the shapes.</exception>
    public static EinsumPath Of(string equation, params Shape[] shapes)
    {
        ArgumentNullException.ThrowIfNull(shapes);
        var eq = EinsumEquation.Parse(equation, shapes);
        return Plan(eq, [.. eq.Inputs.Select(Reduced(eq))]);
    }

    /// <summary>Each operand's labels after its repeated labels are merged (diagonals) and its private labels summed.</summary>
    internal static Func<int[], int, int[]> Reduced(EinsumEquation eq) => (labels, i) =>
    {
        var elsewhere = eq.Output.Concat(eq.Inputs.Where((_, j) => j != i).SelectMany(t => t)).ToHashSet();
        return [.. labels.Distinct().Where(elsewhere.Contains)];
    };

    internal static EinsumPath Plan(EinsumEquation eq, int[][] labels)
    {
        int n = labels.Length;
        if (n == 1) return new EinsumPath(eq, labels, new Tree(0, null, null, labels[0]), []);
        var output = eq.Output.ToHashSet();
        double Size(IEnumerable<int> ls) => ls.Aggregate(1.0, (p, l) => p * eq.Sizes[l]);
        // The labels a subset of operands must keep: those the output or an operand outside the subset still needs.
        int[] Keep(IEnumerable<int> members)
        {
            var inside = members.ToHashSet();
            var outside = labels.Where((_, i) => !inside.Contains(i)).SelectMany(t => t).Concat(output).ToHashSet();
            return [.. inside.SelectMany(i => labels[i]).Distinct().Where(outside.Contains)];
        }

        Tree root = n <= OptimalLimit ? Optimal(labels, Keep, Size) : Greedy(labels, Keep, Size);
        // The steps in NumPy's convention: contracted positions are removed from the list and the result appended.
        var list = Enumerable.Range(0, n).Select(i => (object)i).ToList();
        var steps = new List<EinsumStep>();
        var ids = new Dictionary<Tree, object>(ReferenceEqualityComparer.Instance);
        object Id(Tree t) => t.Left is null ? t.Leaf : ids[t];
        int[] LabelsOf(Tree t) => t.Left is null ? labels[t.Leaf] : t.Keep;
        void Walk(Tree t)
        {
            if (t.Left is null) return;
            Walk(t.Left); Walk(t.Right!);
            int a = list.IndexOf(Id(t.Left)), b = list.IndexOf(Id(t.Right!));
            var (la, lb) = (LabelsOf(t.Left), LabelsOf(t.Right!));
            list.RemoveAt(Math.Max(a, b)); list.RemoveAt(Math.Min(a, b));
            var node = new object();
            ids[t] = node; list.Add(node);
            steps.Add(new EinsumStep([Math.Min(a, b), Math.Max(a, b)],
                $"{EinsumEquation.Subscripts(la)},{EinsumEquation.Subscripts(lb)}->{EinsumEquation.Subscripts(t.Keep)}", Size(la.Union(lb))));
        }
        Walk(root);
        return new EinsumPath(eq, labels, root, steps);
    }

    static Tree Optimal(int[][] labels, Func<IEnumerable<int>, int[]> keep, Func<IEnumerable<int>, double> size)
    {
        int n = labels.Length, full = (1 << n) - 1;
        var cost = new double[full + 1];
        var split = new int[full + 1];
        var keeps = new int[full + 1][];
        for (int s = 1; s <= full; s++)
        {
            var members = Enumerable.Range(0, n).Where(i => (s >> i & 1) != 0).ToArray();
            keeps[s] = keep(members);
            if (members.Length == 1) continue;
            cost[s] = double.PositiveInfinity;
            // Each unordered split once: the part holding the lowest member is the left one.
            int low = s & -s;
            for (int a = (s - 1) & s; a > 0; a = (a - 1) & s)
            {
                if ((a & low) == 0) continue;
                int b = s ^ a;
                double c = cost[a] + cost[b] + size(keeps[a].Union(keeps[b]));
                if (c < cost[s]) { cost[s] = c; split[s] = a; }
            }
        }
        Tree Build(int s) => (s & (s - 1)) == 0
            ? new Tree(System.Numerics.BitOperations.TrailingZeroCount(s), null, null, labels[System.Numerics.BitOperations.TrailingZeroCount(s)])
            : new Tree(-1, Build(split[s]), Build(s ^ split[s]), keeps[s]);
        return Build(full);
    }

    static Tree Greedy(int[][] labels, Func<IEnumerable<int>, int[]> keep, Func<IEnumerable<int>, double> size)
    {
        var live = labels.Select((l, i) => (Tree: new Tree(i, null, null, l), Members: new[] { i })).ToList();
        while (live.Count > 1)
        {
            (int A, int B, double Score, double Cost, int[] Keep) best = (0, 1, double.PositiveInfinity, double.PositiveInfinity, []);
            for (int a = 0; a < live.Count; a++)
                for (int b = a + 1; b < live.Count; b++)
                {
                    var k = keep(live[a].Members.Concat(live[b].Members));
                    double cost = size(live[a].Tree.Keep.Union(live[b].Tree.Keep));
                    double score = size(k) - size(live[a].Tree.Keep) - size(live[b].Tree.Keep);
                    if (score < best.Score || (score == best.Score && cost < best.Cost)) best = (a, b, score, cost, k);
                }
            var node = (new Tree(-1, live[best.A].Tree, live[best.B].Tree, best.Keep), live[best.A].Members.Concat(live[best.B].Members).ToArray());
            live.RemoveAt(best.B); live.RemoveAt(best.A);
            live.Add(node);
        }
        return live[0].Tree;
    }

    /// <summary>The path as NumPy's einsum_path prints it: the costs, then one line per step.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.AppendLine($"einsum path for '{Equation}'");
        sb.AppendLine($"  naive multiply-adds:     {NaiveMultiplyAdds:G4}");
        sb.AppendLine($"  optimized multiply-adds: {MultiplyAdds:G4} (speed-up {(MultiplyAdds > 0 ? NaiveMultiplyAdds / MultiplyAdds : 1):G4}x)");
        foreach (var s in Steps) sb.AppendLine($"  ({s.Operands[0]}, {s.Operands[1]})  {s.Subscripts,-28} {s.MultiplyAdds:G4}");
        return sb.ToString();
    }
}

public partial class Tensor
{
    /// <summary>
    /// Einstein summation with NumPy's and PyTorch's grammar: "ij,jk->ik" (explicit output), "ij,jk" (implicit: the
    /// labels that appear once, alphabetically), "...ij,...jk->...ik" (an ellipsis stands for the leading dims and
    /// broadcasts right-aligned), "ii->i" (a repeated label reads a diagonal), labels absent from the output are summed,
    /// and an extent of 1 broadcasts against the label's extent elsewhere. Several operands are contracted pairwise in
    /// the order <see cref="EinsumPath.Of"/> chooses to minimise multiply-adds; each step is a batched matrix product, so
    /// the work runs in Kiln's GEMM, on the operands' device, and differentiates like the ops it is made of. Half
    /// operands run the whole contraction in Float32 and round the result once (PyTorch rounds every intermediate).
    /// </summary>
    /// <exception cref="ArgumentException">The equation is malformed, or does not fit the operands' ranks.</exception>
    /// <exception cref="ShapeMismatchException">A label has different extents (neither 1) in two places.</exception>
    public static Tensor Einsum(string equation, params Tensor[] operands)
    {
        const string op = "einsum";
        ArgumentNullException.ThrowIfNull(operands);
        if (operands.Length == 0) throw new ArgumentException("einsum: at least one operand is needed", nameof(operands));
        if (Autocast.Lowers(operands)) return Einsum(equation, [.. operands.Select(Autocast.Lower)]);
        for (int i = 0; i < operands.Length; i++)
        {
            ArgumentNullException.ThrowIfNull(operands[i], $"operands[{i}]");
            operands[i].Storage.ThrowIfDisposed(op);
            Check.SameDType(operands[0], operands[i], op, $"operands[{i}]");
            Check.SameDevice(operands[0], operands[i], op, $"operands[{i}]");
        }
        if (operands[0].DType.IsHalf())
            using (Autocast.Disable()) return Einsum(equation, [.. operands.Select(t => t.To(DType.Float32))]).To(operands[0].DType);
        var eq = EinsumEquation.Parse(equation, [.. operands.Select(t => t.Shape)]);
        var reduce = EinsumPath.Reduced(eq);
        var prepared = operands.Select((t, i) => EinsumPrepare(t, eq.Inputs[i], reduce(eq.Inputs[i], i))).ToArray();
        var path = EinsumPath.Plan(eq, [.. prepared.Select(p => p.Labels)]);

        (Tensor T, int[] Labels) Eval(EinsumPath.Tree t) =>
            t.Left is null ? prepared[t.Leaf] : EinsumPair(Eval(t.Left), Eval(t.Right!), t.Keep);
        var (y, labels) = Eval(path.Root!);
        // Labels the output does not name were summed on the way; what is left only needs ordering.
        return y.Permute([.. eq.Output.Select(l => Array.IndexOf(labels, l))]);
    }

    /// <summary>One operand with each repeated label merged into one diagonal dim and the labels in <paramref name="keep"/> only.</summary>
    static (Tensor T, int[] Labels) EinsumPrepare(Tensor t, int[] labels, int[] keep)
    {
        // A repeated label reads the diagonal of its two dims, a view that Diagonal appends as the last dim.
        for (int d1; (d1 = Array.FindIndex(labels, l => labels.Count(m => m == l) > 1)) >= 0;)
        {
            int l = labels[d1], d2 = Array.IndexOf(labels, l, d1 + 1);
            t = t.Diagonal(0, d1, d2);
            labels = [.. labels.Where((_, d) => d != d1 && d != d2), l];
        }
        var summed = labels.Select((l, d) => (l, d)).Where(p => !keep.Contains(p.l)).Select(p => p.d).ToArray();
        if (summed.Length > 0) { t = t.Sum(summed).To(t.DType); labels = [.. labels.Where(keep.Contains)]; }
        return (t, labels);
    }

    /// <summary>
    /// Contracts two operands down to the labels in <paramref name="keep"/>. Shared labels that are kept are batch dims,
    /// shared labels that are not are summed: [batch, left, inner] x [batch, inner, right] is one batched matrix product.
    /// With nothing to sum (or a dot product per batch entry, or integers) it is a broadcast product and a sum instead.
    /// </summary>
    static (Tensor T, int[] Labels) EinsumPair((Tensor T, int[] Labels) a, (Tensor T, int[] Labels) b, int[] keep)
    {
        var (x, la) = a;
        var (z, lb) = b;
        int[] batch = [.. la.Where(l => lb.Contains(l) && keep.Contains(l))], inner = [.. la.Where(l => lb.Contains(l) && !keep.Contains(l))];
        int[] left = [.. la.Where(l => !lb.Contains(l))], right = [.. lb.Where(l => !la.Contains(l))];
        int Extent(Tensor t, int[] labels, int l) => t.Shape[Array.IndexOf(labels, l)];
        long m = left.Aggregate(1L, (p, l) => p * Extent(x, la, l)), n = right.Aggregate(1L, (p, l) => p * Extent(z, lb, l));
        int[] Axes(int[] labels, IEnumerable<int> order) => [.. order.Select(l => Array.IndexOf(labels, l))];

        if (inner.Length == 0 || !x.DType.IsFloating() || (m == 1 && n == 1))
        {
            // Both sides laid out as [batch, left, right, inner] with extent 1 where a side lacks the label.
            int[] all = [.. batch, .. left, .. right, .. inner];
            Tensor Spread(Tensor t, int[] labels) =>
                t.Permute(Axes(labels, all.Where(labels.Contains))).Reshape([.. all.Select(l => labels.Contains(l) ? Extent(t, labels, l) : 1)]);
            var p = Spread(x, la) * Spread(z, lb);
            // Sum widens Int32 to Int64; einsum keeps its operands' dtype as PyTorch's (the wrapped low bits are the same).
            if (inner.Length > 0) p = p.Sum([.. Enumerable.Range(all.Length - inner.Length, inner.Length)]).To(p.DType);
            return (p, [.. batch, .. left, .. right]);
        }

        // A summed label of extent 1 on one side broadcasts: the other side sums over it alone first.
        foreach (int l in inner)
        {
            int ea = Extent(x, la, l), eb = Extent(z, lb, l);
            if (ea == 1 && eb != 1) z = z.Sum([Array.IndexOf(lb, l)], keepDim: true);
            else if (eb == 1 && ea != 1) x = x.Sum([Array.IndexOf(la, l)], keepDim: true);
        }
        int k = inner.Aggregate(1, (p, l) => p * Extent(x, la, l));
        var xm = x.Permute(Axes(la, [.. batch, .. left, .. inner])).Reshape([.. batch.Select(l => Extent(x, la, l)), (int)m, k]);
        var zm = z.Permute(Axes(lb, [.. batch, .. inner, .. right])).Reshape([.. batch.Select(l => Extent(z, lb, l)), k, (int)n]);
        var y = xm.MatMul(zm);
        int[] dims = [.. y.Shape.Dims[..^2], .. left.Select(l => Extent(x, la, l)), .. right.Select(l => Extent(z, lb, l))];
        return (y.Reshape(dims), [.. batch, .. left, .. right]);
    }
}
