using Kiln.Kernels;

namespace Kiln.Ops;

/// <summary>The matrix product and fused attention definitions.</summary>
public static class LinalgOps
{
    /// <summary>Every definition of the family.</summary>
    public static IReadOnlyList<OpDefinition> All { get; } = [new GemmDefinition(), new LinearDefinition(), new IntegerGemmDefinition(), new AttentionDefinition(), new EinsumDefinition()];

    /// <summary>
    /// A [.., m, k] (the case's input, any layout) times B [k, n] with n drawn from the seed, stored [k, n] or (odd seeds)
    /// [n, k] and transposed, judged by the standard bound k u sum|a||b|. In BFloat16 and Float16 the operands are widened
    /// and summed in float32 and a half result is rounded once, so the budget is the float32 bound of the float64 product
    /// of the stored operands plus the half format's rounding of it; every
    /// third seed takes A in Float32 (a half weight with float32 activations, a Float32 result).
    /// </summary>
    sealed class GemmDefinition() : OpDefinition("gemm.matmul", "gemm", DTypeLists.Floats, new(-1, 1),
        Tolerance.Bound())
    {
        public override int MinRank => 2;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var a = Input(c, dtype, device);
            if (dtype.IsHalf() && c.Seed % 3 == 0) a = a.To(DType.Float32);
            int m = c.Shape[^2], k = c.Shape[^1], n = 1 + (int)(c.Seed % 70), batch = a.Numel / Math.Max(m * k, 1);
            var b = c.Seed % 2 == 1
                ? Input([n, k], InputView.Contiguous, c.Seed + 17, dtype, device, Domain).T
                : Input([k, n], InputView.Contiguous, c.Seed + 17, dtype, device, Domain);
            double[] ad = a.Contiguous().ToDoubleArray(), bd = b.ToDoubleArray();
            if (m * k == 0) batch = c.Shape[..^2].Aggregate(1, (p, q) => p * q);
            var expected = Enumerable.Range(0, batch).SelectMany(t => Reference.Gemm(m, n, k, ad.AsSpan(t * m * k, m * k), bd)).ToArray();
            var absA = ad.Select(Math.Abs).ToArray();
            var absB = bd.Select(Math.Abs).ToArray();
            var magnitude = Enumerable.Range(0, batch).SelectMany(t => Reference.Gemm(m, n, k, absA.AsSpan(t * m * k, m * k), absB)).ToArray();
            var y = a.MatMul(b);
            var outType = a.DType == DType.Float32 ? DType.Float32 : dtype;
            if (y.DType != outType) return new CheckResult(double.PositiveInfinity, false, $"{Name}: result dtype {y.DType}, expected {outType}");
            return Tolerance.Check(expected, y.ToDoubleArray(), outType, c, Name, magnitude, k);
        }
    }

    /// <summary>
    /// A linear layer x weight^T + bias (bias for even seeds, then ReLU for seeds 1 and 2 mod 4): x is the case's input
    /// [.., rows, in], weight [out, in] with out drawn from the seed. Same budget as <see cref="GemmDefinition"/> with
    /// the bias as one more term; in half dtypes every third seed takes x in Float32 (a Float32 result).
    /// </summary>
    sealed class LinearDefinition() : OpDefinition("gemm.linear", "gemm", DTypeLists.Floats, new(-1, 1),
        Tolerance.Bound())
    {
        public override int MinRank => 1;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            if (dtype.IsHalf() && c.Seed % 3 == 0) x = x.To(DType.Float32);
            int inF = c.Shape[^1], outF = 1 + (int)(c.Seed / 2 % 70), rows = x.Numel / Math.Max(inF, 1);
            if (inF == 0) rows = c.Shape[..^1].Aggregate(1, (p, q) => p * q);
            bool relu = c.Seed % 4 is 1 or 2;
            var w = Input([outF, inF], InputView.Contiguous, c.Seed + 17, dtype, device, Domain);
            var bias = c.Seed % 2 == 0 ? Input([outF], InputView.Contiguous, c.Seed + 18, dtype, device, Domain) : null;
            double[] xd = x.Contiguous().ToDoubleArray(), wt = w.T.ToDoubleArray(), bd = bias?.ToDoubleArray() ?? new double[outF];
            var ab = Reference.Gemm(rows, outF, inF, xd, wt);
            var abs = Reference.Gemm(rows, outF, inF, xd.Select(Math.Abs).ToArray(), wt.Select(Math.Abs).ToArray());
            var expected = ab.Select((v, i) => v + bd[i % outF]).Select(v => relu ? Math.Max(v, 0) : v).ToArray();
            var magnitude = abs.Select((v, i) => v + Math.Abs(bd[i % outF])).ToArray();
            var y = Tensor.Linear(x, w, bias, relu);
            var outType = x.DType == DType.Float32 ? DType.Float32 : dtype;
            if (y.DType != outType) return new CheckResult(double.PositiveInfinity, false, $"{Name}: result dtype {y.DType}, expected {outType}");
            return Tolerance.Check(expected, y.ToDoubleArray(), outType, c, Name, magnitude, inF + 1);
        }
    }

    /// <summary>
    /// Exact integer matmul: A [.., m, k] (the case's input, any layout) times B [k, n] (n from the seed; B transposed for
    /// odd seeds), with values at the dtype's limits, past 2^53 and anywhere in the range, so sums and products wrap;
    /// checked for equality against the 64-bit integer reference (Int32: its low 32 bits).
    /// </summary>
    sealed class IntegerGemmDefinition() : OpDefinition("gemm.matmul_int", "gemm", [DType.Int32, DType.Int64], Domain.Default, Tolerance.Exact)
    {
        public override int MinRank => 2;

        static long[] Values(int count, DType dtype, ulong seed)
        {
            var rng = new Random((int)(seed % int.MaxValue));
            long lo = dtype == DType.Int32 ? int.MinValue : long.MinValue, hi = dtype == DType.Int32 ? int.MaxValue : long.MaxValue;
            var v = new long[count];
            for (int i = 0; i < count; i++)
                v[i] = rng.Next(4) switch
                {
                    0 => rng.Next(-7, 8),
                    1 => rng.Next(2) == 0 ? hi - rng.Next(8) : lo + rng.Next(8),
                    2 when dtype == DType.Int64 => (rng.Next(2) == 0 ? 1 : -1) * ((1L << 53) + rng.Next(8)),
                    _ => rng.NextInt64(lo, hi),
                };
            return v;
        }

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var (dense, lay) = Layout(c.Shape, c.View);
            var a = lay(Tensor.FromArray(Values(dense.Aggregate(1, (p, q) => p * q), dtype, c.Seed), new Shape(dense)).To(dtype).To(device));
            int m = c.Shape[^2], k = c.Shape[^1], n = 1 + (int)(c.Seed % 70), batch = c.Shape[..^2].Aggregate(1, (p, q) => p * q);
            bool transposed = c.Seed % 2 == 1;
            var bData = Values(k * n, dtype, c.Seed + 17);
            var b = (transposed ? Tensor.FromArray(bData, new Shape(n, k)).T : Tensor.FromArray(bData, new Shape(k, n))).To(dtype).To(device);
            long[] ad = a.Contiguous().To(DType.Int64).ToArray<long>(), bd = b.Contiguous().To(DType.Int64).ToArray<long>();
            var expected = Enumerable.Range(0, batch).SelectMany(t => Reference.GemmInt64(m, n, k, ad.AsSpan(t * m * k, m * k), bd))
                .Select(v => dtype == DType.Int32 ? (int)v : v).ToArray();
            var y = a.MatMul(b);
            if (y.DType != dtype) return new CheckResult(double.PositiveInfinity, false, $"{Name}: result dtype {y.DType}, expected {dtype}");
            return CheckResult.EqualInt64(expected, y.To(DType.Int64).ToArray<long>(), Name);
        }
    }

    /// <summary>softmax(scale q k^T) v over heads, causal or not: q is the case's [heads, tq, d]; k and v have tk keys drawn from the seed.</summary>
    sealed class AttentionDefinition() : OpDefinition("attention.sdpa", "attention", DTypeLists.Floats, new(-1, 1), new Tolerance(8))
    {
        public override int MinRank => 3;
        public override int MaxRank => 3;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var q = Input(c, dtype, device).Contiguous();
            int bh = c.Shape[0], tq = c.Shape[1], d = c.Shape[2], tk = (int)(c.Seed % 40), dv = 1 + (int)(c.Seed / 40 % 9);
            bool causal = c.Seed % 2 == 0;
            var k = Input([bh, tk, d], InputView.Contiguous, c.Seed + 1, dtype, device, Domain);
            var v = Input([bh, tk, dv], InputView.Contiguous, c.Seed + 2, dtype, device, Domain);
            double scale = 1 / Math.Sqrt(Math.Max(d, 1));
            var (qd, kd, vd) = (q.ToDoubleArray(), k.ToDoubleArray(), v.ToDoubleArray());
            var expected = Enumerable.Range(0, bh).SelectMany(t => Reference.Attention(tq, tk, d, dv,
                qd.AsSpan(t * tq * d, tq * d), kd.AsSpan(t * tk * d, tk * d), vd.AsSpan(t * tk * dv, tk * dv), causal, scale)).ToArray();
            return Tolerance.Check(expected, Tensor.ScaledDotProductAttention(q, k, v, causal, scale).ToDoubleArray(), dtype, c, Name, terms: tk);
        }
    }

    /// <summary>
    /// einsum of the case's input with one or two operands drawn from the seed: each shares a random subset of the
    /// input's labels (with extent 1 now and then, to broadcast) and adds new ones; the output keeps a random subset in a
    /// random order, or is implicit. Judged against direct summation by the bound n u sum|products|, n the summed terms
    /// plus the factors of a product.
    /// </summary>
    sealed class EinsumDefinition() : OpDefinition("einsum", "einsum", DTypeLists.Floats, new(-1, 1), Tolerance.Bound())
    {
        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var rng = new Random((int)(c.Seed % int.MaxValue));
            var x = Input(c, dtype, device);
            const string letters = "abcdefghijklmnopqrstuvwxyz";
            string xs = letters[..c.Shape.Length];
            var extent = xs.Select((ch, i) => (ch, c.Shape[i])).ToDictionary(t => t.ch, t => t.Item2);
            int fresh = c.Shape.Length;
            var terms = new List<string> { xs };
            var operands = new List<Tensor> { x };
            int count = 1 + rng.Next(2);
            for (int o = 0; o < count; o++)
            {
                var term = new List<char>();
                foreach (char ch in extent.Keys.Where(_ => rng.Next(2) == 0)) term.Add(ch);
                for (int f = rng.Next(2); f > 0 && fresh < letters.Length; f--) { extent[letters[fresh]] = 1 + rng.Next(4); term.Add(letters[fresh++]); }
                term = [.. term.OrderBy(_ => rng.Next())];
                int[] shape = [.. term.Select(ch => rng.Next(6) == 0 ? 1 : extent[ch])];
                terms.Add(new string([.. term]));
                operands.Add(Input(shape, InputView.Contiguous, c.Seed + 17 + (ulong)o, dtype, device, Domain));
            }
            var used = terms.SelectMany(t => t).Distinct().OrderBy(_ => rng.Next()).ToArray();
            string eq = string.Join(",", terms) + (rng.Next(4) == 0 ? "" : "->" + new string([.. used.Where(_ => rng.Next(2) == 0)]));
            var parsed = EinsumEquation.Parse(eq, [.. operands.Select(t => t.Shape)]);
            var data = operands.Select(t => t.Contiguous().ToDoubleArray()).ToArray();
            int[][] shapes = [.. operands.Select(t => t.Shape.ToArray())];
            var expected = Reference.Einsum(parsed.Inputs, shapes, data, parsed.Output, parsed.Sizes);
            var magnitude = Reference.Einsum(parsed.Inputs, shapes, [.. data.Select(d => d.Select(Math.Abs).ToArray())], parsed.Output, parsed.Sizes);
            long summed = parsed.Sizes.Where(kv => !parsed.Output.Contains(kv.Key)).Aggregate(1L, (p, kv) => p * kv.Value);
            return Tolerance.Check(expected, Tensor.Einsum(eq, [.. operands]).ToDoubleArray(), dtype, c, $"{Name} '{eq}'", magnitude, (int)summed + operands.Count - 1);
        }
    }
}
