using Kiln.Kernels;
using Kiln.Ops;

namespace Kiln.Ops
{
    /// <summary>
    /// A unary primitive: its kernel code <see cref="Op"/> (the CPU and GPU kernels of kernels/*/Elementwise.cs switch on
    /// it, <see cref="Reference.Unary"/> defines it), its derivative rule in tensor ops, the values it is validated on, the
    /// values its gradient is checked on by finite differences, and for a parametrised op (hardtanh, elu, celu, leaky_relu)
    /// the parameter sets it is validated and gradient-checked with.
    /// </summary>
    public sealed class UnaryOpDefinition : OpDefinition
    {
        internal UnaryOpDefinition(UnaryOp op, Func<Tensor, Tensor, Tensor, UnaryParams, Tensor>? gradient, Domain domain, Tolerance tolerance, Domain? gradDomain = null,
            IReadOnlyList<UnaryParams>? parameters = null, IReadOnlyList<DType>? dtypes = null)
            : base("unary." + op.ToString().ToLowerInvariant(), "elementwise", dtypes ?? DTypeLists.Floats, domain, tolerance)
        {
            Op = op;
            Gradient = gradient;
            GradDomain = gradDomain ?? new Domain(Math.Max(domain.Low, -2), Math.Min(domain.High, 2));
            Parameters = parameters ?? [default];
        }

        /// <summary>The kernel code.</summary>
        public UnaryOp Op { get; }
        /// <summary>
        /// (x, y = f(x), upstream g, parameters) -&gt; g f'(x) in tensor ops, so it runs on any device and differentiates
        /// again; null where f' is 0 almost everywhere.
        /// </summary>
        public Func<Tensor, Tensor, Tensor, UnaryParams, Tensor>? Gradient { get; }
        /// <summary>Where central finite differences of f are accurate (away from kinks and poles).</summary>
        public Domain GradDomain { get; }
        /// <summary>The parameter sets the op is validated with: the first is PyTorch's default (what <see cref="Tensor.Apply(UnaryOp)"/> uses), the others are not; one default set for ops without parameters.</summary>
        public IReadOnlyList<UnaryParams> Parameters { get; }

        /// <summary>The parameters as the kernels of <paramref name="dtype"/> hold them (a half dtype computes in Float32), so the reference does too.</summary>
        static UnaryParams Held(UnaryParams p, DType dtype) => dtype != DType.Float64 ? new((float)p.A, (float)p.B) : p;

        /// <inheritdoc/>
        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var xd = x.ToDoubleArray();
            var result = CheckResult.Ok;
            foreach (var p in Parameters)
            {
                var expected = xd.Select(v => Reference.Unary(Op, v, Held(p, dtype))).ToArray();
                result = result.Merge(Tolerance.Check(expected, x.Apply(Op, p).ToDoubleArray(), dtype, c, Parameters.Count > 1 ? $"{Name} {p}" : Name));
            }
            return result;
        }

        /// <inheritdoc/>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            var specials = SpecialValues.Of(dtype, Domain);
            if (specials.Count == 0) return [];
            var xs = specials.Select(s => s.Value).ToArray();
            var x = Tensor.FromArray(xs).To(dtype).To(device);
            // Every parameter set over the same inputs, judged together so each input class is one row.
            var expected = Parameters.SelectMany(p => xs.Select(v => Reference.Unary(Op, v, Held(p, dtype)))).ToArray();
            var actual = Parameters.SelectMany(p => x.Apply(Op, p).ToDoubleArray()).ToArray();
            string[] classes = [.. Parameters.SelectMany(_ => specials.Select(s => s.Class))];
            return SpecialValues.Judge(Tolerance, dtype, relaxed, classes, expected, actual, i => [xs[i % xs.Length]]);
        }
    }

    /// <summary>A binary primitive with NumPy broadcasting: kernel code, derivative rule, and the values of each operand.</summary>
    public sealed class BinaryOpDefinition : OpDefinition
    {
        internal BinaryOpDefinition(BinaryOp op, Func<Tensor, Tensor, Tensor, Tensor, Tensor?[]> gradient, Domain domain, Domain other, IReadOnlyList<DType> dtypes, Tolerance tolerance)
            : base("binary." + op.ToString().ToLowerInvariant(), "elementwise", dtypes, domain, tolerance)
        {
            Op = op;
            Gradient = gradient;
            OtherDomain = other;
        }

        /// <summary>The kernel code.</summary>
        public BinaryOp Op { get; }
        /// <summary>(a, b, y, upstream g) -&gt; (ga, gb), each summed back to its operand's shape.</summary>
        public Func<Tensor, Tensor, Tensor, Tensor, Tensor?[]> Gradient { get; }
        /// <summary>The values of the second operand.</summary>
        public Domain OtherDomain { get; }

        /// <inheritdoc/>
        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var (a, b) = Operands(this, OtherDomain, c, dtype, device);
            // Integer division's kernel truncates (Div with DivRounding.Trunc); "/" on integers is true division in Float32.
            var y = Op == BinaryOp.Div && !dtype.IsFloating() ? a.Div(b, DivRounding.Trunc) : Tensor.Binary(Op, a, b);
            var ad = a.BroadcastTo(y.Shape).ToDoubleArray();
            var bd = b.BroadcastTo(y.Shape).ToDoubleArray();
            var expected = ad.Select((v, i) => Reference.Binary(Op, v, bd[i])).ToArray();
            if (!dtype.IsFloating()) return CheckResult.Equal(expected.Select(v => Math.Truncate(v)).ToArray(), y.ToDoubleArray(), Name);
            return Tolerance.Check(expected, y.ToDoubleArray(), dtype, c, Name);
        }

        /// <inheritdoc/>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            var (a, b, classes) = SpecialPairs(this, OtherDomain, dtype);
            if (a.Length == 0) return [];
            var expected = a.Select((v, i) => Reference.Binary(Op, v, b[i])).ToArray();
            var y = Tensor.Binary(Op, Tensor.FromArray(a).To(dtype).To(device), Tensor.FromArray(b).To(dtype).To(device));
            return SpecialValues.Judge(Tolerance, dtype, relaxed, classes, expected, y.ToDoubleArray(), i => [a[i], b[i]]);
        }

        /// <summary>Every pair of special values (each operand's, with the other operand's domain ends as ordinary values), classed by the first special operand.</summary>
        internal static (double[] A, double[] B, string[] Classes) SpecialPairs(OpDefinition op, Domain other, DType dtype)
        {
            var sa = SpecialValues.Of(dtype, op.Domain);
            var sb = SpecialValues.Of(dtype, other);
            if (sa.Count == 0) return ([], [], []);
            var ordinaryA = new[] { ("ordinary", op.Domain.Low), ("ordinary", op.Domain.High) };
            var ordinaryB = new[] { ("ordinary", other.Low), ("ordinary", other.High) };
            var pairs = (from p in sa.Concat(ordinaryA) from q in sb.Concat(ordinaryB) where p.Item1 != "ordinary" || q.Item1 != "ordinary" select (p, q)).ToArray();
            return ([.. pairs.Select(t => t.p.Item2)], [.. pairs.Select(t => t.q.Item2)], [.. pairs.Select(t => t.p.Item1 != "ordinary" ? t.p.Item1 : t.q.Item1)]);
        }

        /// <summary>The case's input and a second operand that broadcasts against it along its last axis (and drops its first when rank &gt; 1).</summary>
        internal static (Tensor A, Tensor B) Operands(OpDefinition op, Domain other, OpCase c, DType dtype, Device device)
        {
            var a = op.Input(c, dtype, device);
            int[] s = c.Shape.Length == 0 ? [] : [.. c.Shape[(c.Shape.Length > 1 ? 1 : 0)..^1], Math.Min(c.Shape[^1], 1)];
            var b = OpDefinition.Input(s, InputView.Contiguous, c.Seed ^ 0x5DEECE66DUL, dtype, device, other);
            return (a, b);
        }
    }

    /// <summary>A bitwise primitive on integers and booleans: exact, against <see cref="Reference.Bitwise"/>.</summary>
    public sealed class BitwiseOpDefinition : OpDefinition
    {
        internal BitwiseOpDefinition(BitwiseOp op, Domain other)
            : base("bitwise." + Snake(op), "elementwise", op is BitwiseOp.LeftShift or BitwiseOp.RightShift ? [DType.Int32, DType.Int64] : [DType.Int32, DType.Int64, DType.Bool],
                Domain.Default, Tolerance.Exact)
        {
            Op = op;
            OtherDomain = other;
        }

        static string Snake(BitwiseOp op) => op switch { BitwiseOp.LeftShift => "left_shift", BitwiseOp.RightShift => "right_shift", _ => op.ToString().ToLowerInvariant() };

        /// <summary>The kernel code.</summary>
        public BitwiseOp Op { get; }
        /// <summary>The values of the second operand (integer inputs take 7 times the domain: shift counts below 0 and past the widths).</summary>
        public Domain OtherDomain { get; }

        /// <inheritdoc/>
        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var (a, b) = BinaryOpDefinition.Operands(this, OtherDomain, c, dtype, device);
            var y = Op == BitwiseOp.Not ? a.BitwiseNot() : Tensor.Bitwise(Op, a, b);
            var ad = a.BroadcastTo(y.Shape).ToDoubleArray();
            var bd = b.BroadcastTo(y.Shape).ToDoubleArray();
            int bits = dtype switch { DType.Bool => 1, DType.Int32 => 32, _ => 64 };
            if (Op == BitwiseOp.Not) ad = a.ToDoubleArray();
            var expected = ad.Select((v, i) => (double)Reference.Bitwise(Op, (long)v, Op == BitwiseOp.Not ? 0 : (long)bd[i], bits)).ToArray();
            return CheckResult.Equal(expected, y.ToDoubleArray(), Name);
        }
    }

    /// <summary>An elementwise comparison: a Bool result that must equal the reference exactly.</summary>
    public sealed class CompareOpDefinition : OpDefinition
    {
        internal CompareOpDefinition(CompareOp op)
            : base("compare." + op.ToString().ToLowerInvariant(), "elementwise", DTypeLists.Numbers, new Domain(-3, 3, double.NaN, 0.0), Tolerance.Exact) => Op = op;

        /// <summary>The kernel code.</summary>
        public CompareOp Op { get; }

        /// <inheritdoc/>
        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            // Integers compare on rounded values, so ties are common.
            var (a, b) = BinaryOpDefinition.Operands(this, Domain, c, dtype, device);
            var y = Tensor.Compare(Op, a, b);
            var ad = a.BroadcastTo(y.Shape).ToDoubleArray();
            var bd = b.BroadcastTo(y.Shape).ToDoubleArray();
            return CheckResult.Equal(ad.Select((v, i) => Reference.Compare(Op, v, bd[i]) ? 1.0 : 0.0).ToArray(), y.ToDoubleArray(), Name);
        }

        /// <inheritdoc/>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            var (a, b, classes) = BinaryOpDefinition.SpecialPairs(this, Domain, dtype);
            if (a.Length == 0) return [];
            var y = Tensor.Compare(Op, Tensor.FromArray(a).To(dtype).To(device), Tensor.FromArray(b).To(dtype).To(device));
            var expected = a.Select((v, i) => Reference.Compare(Op, v, b[i]) ? 1.0 : 0.0).ToArray();
            return SpecialValues.Judge(Tolerance, DType.Bool, relaxed, classes, expected, y.ToDoubleArray(), i => [a[i], b[i]]);
        }
    }

    /// <summary>where(cond, a, b) and clamp(x, lo, hi): selections, exact.</summary>
    public sealed class SelectDefinition : OpDefinition
    {
        readonly bool _clamp;

        internal SelectDefinition(bool clamp)
            : base(clamp ? "select.clamp" : "select.where", "elementwise", DTypeLists.Numbers, new Domain(-3, 3, double.NaN), Tolerance.Exact) =>
            _clamp = clamp;

        /// <inheritdoc/>
        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var xd = x.ToDoubleArray();
            if (_clamp)
                return CheckResult.Equal(xd.Select(v => double.IsNaN(v) ? v : Math.Min(Math.Max(v, -1), 2)).ToArray(), x.Clamp(-1, 2).ToDoubleArray(), Name);
            var y = Tensor.Where(x > 0.5, x, -x);
            return CheckResult.Equal(xd.Select(v => v > 0.5 ? v : -v).ToArray(), y.ToDoubleArray(), Name);
        }

        /// <inheritdoc/>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            var specials = SpecialValues.Of(dtype, Domain);
            if (specials.Count == 0) return [];
            var xs = specials.Select(s => s.Value).ToArray();
            var x = Tensor.FromArray(xs).To(dtype).To(device);
            var (expected, y) = _clamp
                ? (xs.Select(v => double.IsNaN(v) ? v : Math.Min(Math.Max(v, -1), 2)).ToArray(), x.Clamp(-1, 2))
                : (xs.Select(v => v > 0.5 ? v : -v).ToArray(), Tensor.Where(x > 0.5, x, -x));
            return SpecialValues.Judge(Tolerance, dtype, relaxed, [.. specials.Select(s => s.Class)], expected, y.ToDoubleArray(), i => [xs[i]]);
        }
    }

    /// <summary>
    /// The value-class predicates (isnan, isinf, isposinf, isneginf, isfinite: Bool, exact) and nan_to_num (exact: each
    /// value kept or replaced; with PyTorch's defaults, the dtype's extremes, in cases with an even seed, and with given
    /// replacements in the others). Integer tensors hold only finite values.
    /// </summary>
    public sealed class ValueClassDefinition : OpDefinition
    {
        readonly Func<Tensor, OpCase?, Tensor> _op;
        readonly Func<double, DType, OpCase?, double> _reference;
        readonly bool _bool;

        ValueClassDefinition(string name, Func<Tensor, OpCase?, Tensor> op, Func<double, DType, OpCase?, double> reference, bool isBool)
            : base(name, "elementwise", DTypeLists.Numbers, new Domain(-3, 3, double.NaN, double.PositiveInfinity, double.NegativeInfinity, 0.0, -0.0, 1e300), Tolerance.Exact)
        {
            _op = op; _reference = reference; _bool = isBool;
        }

        static double Max(DType dtype) => dtype switch { DType.Float32 => float.MaxValue, DType.Float16 => 65504, DType.BFloat16 => 3.3895313892515355e38, _ => double.MaxValue };

        // Replacements of a case: PyTorch's defaults for an even seed (and the special-value pass), given values otherwise.
        static (double Nan, double? Pos, double? Neg) Args(OpCase? c) => c is { Seed: var s } && s % 2 == 1 ? (1.5, 100.0, -100.0) : (0, null, null);

        static double NanToNum(double v, DType dtype, OpCase? c)
        {
            var (nan, pos, neg) = Args(c);
            return double.IsNaN(v) ? nan : double.IsPositiveInfinity(v) ? pos ?? Max(dtype) : double.IsNegativeInfinity(v) ? neg ?? -Max(dtype) : v;
        }

        static double B(bool b) => b ? 1 : 0;

        /// <summary>The family's definitions.</summary>
        public static IReadOnlyList<ValueClassDefinition> All { get; } =
        [
            new("classify.isnan", (x, _) => x.IsNan(), (v, _, _) => B(double.IsNaN(v)), true),
            new("classify.isinf", (x, _) => x.IsInf(), (v, _, _) => B(double.IsInfinity(v)), true),
            new("classify.isposinf", (x, _) => x.IsPosInf(), (v, _, _) => B(double.IsPositiveInfinity(v)), true),
            new("classify.isneginf", (x, _) => x.IsNegInf(), (v, _, _) => B(double.IsNegativeInfinity(v)), true),
            new("classify.isfinite", (x, _) => x.IsFinite(), (v, _, _) => B(double.IsFinite(v)), true),
            new("select.nan_to_num", (x, c) => { var (n, p, q) = Args(c); return x.NanToNum(n, p, q); }, NanToNum, false),
        ];

        /// <inheritdoc/>
        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var y = _op(x, c);
            if (y.DType != (_bool ? DType.Bool : dtype)) return CheckResult.Equal([0], [1], $"{Name}: result dtype {y.DType}");
            return CheckResult.Equal(x.ToDoubleArray().Select(v => _reference(v, dtype, c)).ToArray(), y.ToDoubleArray(), Name);
        }

        /// <inheritdoc/>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            var specials = SpecialValues.Of(dtype, Domain);
            if (specials.Count == 0) return [];
            var xs = specials.Select(s => s.Value).ToArray();
            var y = _op(Tensor.FromArray(xs).To(dtype).To(device), null);
            var expected = xs.Select(v => _reference(v, dtype, null)).ToArray();
            return SpecialValues.Judge(Tolerance, _bool ? DType.Bool : dtype, relaxed, [.. specials.Select(s => s.Class)], expected, y.ToDoubleArray(), i => [xs[i]]);
        }
    }

    /// <summary>The elementwise family's definitions.</summary>
    public static class ElementwiseOps
    {
        static readonly double InvSqrt2Pi = 1.0 / Math.Sqrt(2 * Math.PI), Sqrt2Pi = Math.Sqrt(2 * Math.PI), TwoOverSqrtPi = 2.0 / Math.Sqrt(Math.PI), SqrtPiOver2 = Math.Sqrt(Math.PI) / 2.0;
        static readonly double Nan = double.NaN, Inf = double.PositiveInfinity;

        // Halves and signed zeros are where the rounding modes differ.
        static readonly Domain Rounding = new(-6, 6, Nan, Inf, -Inf, 0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 2.5, 1e15 + 0.5);

        static UnaryOpDefinition U(UnaryOp op, Func<Tensor, Tensor, Tensor, Tensor>? grad, Domain domain, Tolerance tol, Domain? gradDomain = null) =>
            new(op, grad is null ? null : (x, y, g, _) => grad(x, y, g), domain, tol, gradDomain);

        // The ops that are exact on integers too (issue #15): their integer kernels wrap on overflow, as PyTorch's.
        static UnaryOpDefinition Z(UnaryOp op, Func<Tensor, Tensor, Tensor, Tensor>? grad, Domain domain, Tolerance tol) =>
            new(op, grad is null ? null : (x, y, g, _) => grad(x, y, g), domain, tol, dtypes: DTypeLists.Numbers);

        // A parametrised op: PyTorch's defaults first, then a set that is not the default.
        static UnaryOpDefinition P(UnaryOp op, Func<Tensor, Tensor, Tensor, UnaryParams, Tensor> grad, Domain domain, Tolerance tol, UnaryParams defaults, UnaryParams other, Domain? gradDomain = null) =>
            new(op, grad, domain, tol, gradDomain, [defaults, other]);

        /// <summary>PyTorch's defaults: hardtanh's (min_val, max_val), elu's and celu's alpha, leaky_relu's negative_slope.</summary>
        internal static readonly UnaryParams HardtanhDefault = new(-1, 1), AlphaDefault = new(1), LeakyReluDefault = new(0.01);

        /// <summary>Throws <see cref="NotSupportedException"/> where <paramref name="x"/>'s dtype is not one of <paramref name="def"/>'s.</summary>
        internal static void CheckDType(OpDefinition def, Tensor x, string name)
        {
            if (!def.DTypes.Contains(x.DType))
                throw new NotSupportedException($"{name}: input has dtype {x.DType}; this op computes in {string.Join(", ", def.DTypes)} (convert with .To(DType.Float32))");
        }

        /// <summary>Throws where <paramref name="p"/> is outside what <paramref name="op"/> is defined for, naming the PyTorch argument.</summary>
        internal static void CheckParams(UnaryOp op, UnaryParams p)
        {
            switch (op)
            {
                case UnaryOp.Hardtanh:
                    if (double.IsNaN(p.A)) throw new ArgumentOutOfRangeException("minVal", p.A, "hardtanh: minVal is NaN");
                    if (double.IsNaN(p.B)) throw new ArgumentOutOfRangeException("maxVal", p.B, "hardtanh: maxVal is NaN");
                    if (p.A > p.B) throw new ArgumentException($"hardtanh: minVal {p.A} is greater than maxVal {p.B}", "minVal");
                    break;
                case UnaryOp.Elu or UnaryOp.Celu when !double.IsFinite(p.A):
                    throw new ArgumentOutOfRangeException("alpha", p.A, $"{op.ToString().ToLowerInvariant()}: alpha must be finite");
                case UnaryOp.Celu when p.A == 0:
                    throw new ArgumentOutOfRangeException("alpha", p.A, "celu: alpha must not be 0 (the op divides by it)");
                case UnaryOp.LeakyRelu when !double.IsFinite(p.A):
                    throw new ArgumentOutOfRangeException("negativeSlope", p.A, "leaky_relu: negativeSlope must be finite");
            }
        }

        static Tensor Pick(Tensor cond, Tensor a, double b) => Tensor.Where(cond, a, a.ScalarLike(b));
        static Tensor Pick(Tensor cond, double a, Tensor b) => Tensor.Where(cond, b.ScalarLike(a), b);
        static Tensor Pick(Tensor cond, double a, double b, Tensor like) => Tensor.Where(cond, like.ScalarLike(a), like.ScalarLike(b));

        // Float32 budgets are the OpenCL conformance suite's (add, sub, mul correctly rounded; divide 2.5 ulp; sqrt 3; rsqrt 2;
        // exp, expm1, log 3; log1p 2; sin, cos 4; tan 5; asin, acos, atan 4; sinh, cosh 4; asinh, acosh, atanh 4; tanh 5;
        // pow 16; erf 16; atan2 6), Float64 the same. Kiln's fused functions
        // take the budget of their costliest part: sigmoid, silu and softplus 4 (exp, then a division), erfinv and the normal
        // CDF and quantile 16 (erf's), elu, celu and selu 4 (expm1, then a product), mish 5 (tanh's), hardsigmoid and
        // softsign 2.5 (a division after exact or correctly rounded steps), hardswish 3 (one product more, after the division so
        // that a large x does not overflow). Relaxed (fast-math) budgets follow the suite's relaxed rules: exp-based
        // functions 3 + 2|x| ulp at the largest |x| that does not overflow (88), log 2^-21 absolute, sin and cos 2^-11 absolute.
        static readonly Tolerance Exact = Tolerance.Exact, Rounded = Tolerance.Ulp(0.5);
        static readonly Tolerance ExpRelaxed = Tolerance.Ulp(179);
        static Tolerance Ulp(double ulps) => Tolerance.Ulp(ulps);
        // The GELUs: Kiln's own relative-plus-absolute budget. Their float32 vector forms evaluate 1 + erf and the cubic in
        // float32, which costs relative accuracy where the result is tiny (x well below 0) but not absolute accuracy.
        static readonly Tolerance Gelu = new(8);
        static Tolerance ExpLike(double ulps) => Tolerance.Ulp(ulps).WithRelaxed(ExpRelaxed);
        static Tolerance LogLike(double ulps) => Tolerance.Ulp(ulps).WithRelaxed(Tolerance.Ulp(ulps) with { AbsoluteFloor = Math.ScaleB(1.0, -21) });
        static Tolerance Trig(double ulps) => Tolerance.Ulp(ulps).WithRelaxed(Tolerance.Ulp(ulps) with { AbsoluteFloor = Math.ScaleB(1.0, -11) });

        static readonly double Tiny = 1e-30, Pi = Math.PI, OneUp = 1 + Math.ScaleB(1.0, -23), OneDown = 1 - Math.ScaleB(1.0, -24);

        /// <summary>The unary primitives, in <see cref="UnaryOp"/> order.</summary>
        public static IReadOnlyList<UnaryOpDefinition> Unary { get; } =
        [
            Z(UnaryOp.Neg, (x, y, g) => -g, new(-6, 6, Nan, Inf, -Inf, 0.0), Exact),
            Z(UnaryOp.Abs, (x, y, g) => g * x.Sign(), new(-6, 6, Nan, Inf, -Inf, 0.0), Exact),
            U(UnaryOp.Exp, (x, y, g) => g * y, new(-10, 10, Nan, Inf, -Inf) { Singular = [88.72, -87.3, -103.9, Tiny] }, ExpLike(3)),
            U(UnaryOp.Log, (x, y, g) => g / x, new(0.05, 5, Nan, Inf, 0.0) { Singular = [1, OneUp, OneDown, -Tiny] }, LogLike(3), gradDomain: new(0.3, 3)),
            U(UnaryOp.Log1p, (x, y, g) => g / (x + 1.0), new(-0.9, 5, Nan, Inf) { Singular = [-1, -OneDown, Tiny, -Tiny, -2] }, LogLike(2), gradDomain: new(-0.5, 3)),
            U(UnaryOp.Expm1, (x, y, g) => g * (y + 1.0), new(-10, 10, Nan, Inf, -Inf) { Singular = [Tiny, -Tiny, 88.72, -20] }, ExpLike(3)),
            U(UnaryOp.Sqrt, (x, y, g) => g * 0.5 / y, new(0.05, 5, Nan, Inf, 0.0) { Singular = [-Tiny, 4, 2] }, Ulp(3), gradDomain: new(0.3, 3)),
            U(UnaryOp.Rsqrt, (x, y, g) => g * -0.5 * y * y * y, new(0.05, 5, Nan, Inf) { Singular = [-Tiny, 4, 0.25] }, Ulp(2), gradDomain: new(0.3, 3)),
            U(UnaryOp.Sigmoid, (x, y, g) => g * y * (1.0 - y), new(-6, 6, Nan, Inf, -Inf) { Singular = [88.72, -88.72, -103.9, 17, -17] }, ExpLike(4)),
            U(UnaryOp.Tanh, (x, y, g) => g * (1.0 - y * y), new(-6, 6, Nan, Inf, -Inf) { Singular = [Tiny, -Tiny, 9.01, -20, 0.55] }, ExpLike(5)),
            Z(UnaryOp.Relu, (x, y, g) => g * x.Apply(UnaryOp.Step), new(-6, 6, Inf, -Inf), Exact),
            U(UnaryOp.GeluErf, (x, y, g) => g * (x.NormalCdf() + x * (x * x * -0.5).Exp() * InvSqrt2Pi), new(-6, 6, Nan) { Singular = [-10, -13, -38] }, Gelu),
            U(UnaryOp.GeluTanh, (x, y, g) => g * GeluTanhGrad(x), new(-6, 6, Nan) { Singular = [-10, -13] }, Gelu),
            U(UnaryOp.Silu, (x, y, g) => g * SiluGrad(x), new(-6, 6, Nan) { Singular = [-88.72, -103.9, 30] }, ExpLike(4)),
            U(UnaryOp.Softplus, (x, y, g) => g * x.Sigmoid(), new(-6, 6, Nan, Inf) { Singular = [-88.72, -103.9, 17, 30] }, ExpLike(4)),
            U(UnaryOp.Erf, (x, y, g) => g * (x * x * -1.0).Exp() * TwoOverSqrtPi, new(-6, 6, Nan, Inf, -Inf) { Singular = [Tiny, -Tiny, 0.5, 2.5, 4] }, Ulp(16)),
            U(UnaryOp.Erfinv, (x, y, g) => g * (y * y).Exp() * SqrtPiOver2, new(-0.99, 0.99, Nan) { Singular = [1, -1, OneDown, -OneDown, Tiny] }, Ulp(16), gradDomain: new(-0.8, 0.8)),
            U(UnaryOp.NormalCdf, (x, y, g) => g * (x * x * -0.5).Exp() * InvSqrt2Pi, new(-6, 6, Nan, Inf, -Inf) { Singular = [-10, -13, -38, 8] }, Ulp(16)),
            U(UnaryOp.NormalIcdf, (x, y, g) => g * (y * y * 0.5).Exp() * Sqrt2Pi, new(0.01, 0.99, Nan) { Singular = [1, OneDown, 1e-20, 0.5] }, Ulp(16), gradDomain: new(0.1, 0.9)),
            Z(UnaryOp.Sign, null, new(-6, 6, Nan, Inf, -Inf, 0.0), Exact),
            U(UnaryOp.Reciprocal, (x, y, g) => -g * y * y, new(0.2, 4, Nan, Inf, -Inf), Ulp(2.5), gradDomain: new(0.3, 3)),
            Z(UnaryOp.Square, (x, y, g) => g * 2.0 * x, new(-6, 6, Nan, Inf, -Inf) { Singular = [1.9e19, 1e-23] }, Rounded),
            U(UnaryOp.Sin, (x, y, g) => g * x.Cos(), new(-6, 6, Nan) { Singular = [Pi, Pi / 2, 1e6, 1e30] }, Trig(4)),
            U(UnaryOp.Cos, (x, y, g) => -g * x.Sin(), new(-6, 6, Nan) { Singular = [Pi, Pi / 2, 1e6, 1e30] }, Trig(4)),
            U(UnaryOp.Step, null, new(-6, 6, Inf, -Inf, 0.0), Exact),
            U(UnaryOp.Floor, null, Rounding, Exact),
            U(UnaryOp.Ceil, null, Rounding, Exact),
            U(UnaryOp.Round, null, Rounding, Exact),
            U(UnaryOp.Trunc, null, Rounding, Exact),
            U(UnaryOp.Frac, (x, y, g) => g, Rounding, Exact),
            U(UnaryOp.Tan, (x, y, g) => g * (1.0 + y * y), new(-6, 6, Nan, Inf, -Inf) { Singular = [Pi / 2, -Pi / 2, Tiny, 1e6, 1e30] }, Ulp(5), gradDomain: new(-1.2, 1.2)),
            U(UnaryOp.Asin, (x, y, g) => g * (1.0 - x * x).Rsqrt(), new(-1, 1, Nan, Inf, -Inf) { Singular = [1, -1, OneUp, OneDown, -OneDown, Tiny] }, Ulp(4), gradDomain: new(-0.9, 0.9)),
            U(UnaryOp.Acos, (x, y, g) => -g * (1.0 - x * x).Rsqrt(), new(-1, 1, Nan, Inf, -Inf) { Singular = [1, -1, OneUp, OneDown, -OneDown, Tiny] }, Ulp(4), gradDomain: new(-0.9, 0.9)),
            U(UnaryOp.Atan, (x, y, g) => g / (1.0 + x * x), new(-6, 6, Nan, Inf, -Inf) { Singular = [Tiny, 1, 1e30] }, Ulp(4)),
            U(UnaryOp.Sinh, (x, y, g) => g * x.Cosh(), new(-10, 10, Nan, Inf, -Inf) { Singular = [Tiny, -Tiny, 89.4, -89.4, 710.4] }, ExpLike(4)),
            U(UnaryOp.Cosh, (x, y, g) => g * x.Sinh(), new(-10, 10, Nan, Inf, -Inf) { Singular = [Tiny, 89.4, -89.4, 710.4] }, ExpLike(4)),
            U(UnaryOp.Asinh, (x, y, g) => g * (x * x + 1.0).Rsqrt(), new(-10, 10, Nan, Inf, -Inf) { Singular = [Tiny, -Tiny, 3e8, 1e30, -1e200] }, Ulp(4)),
            U(UnaryOp.Acosh, (x, y, g) => g * (x * x - 1.0).Rsqrt(), new(1, 10, Nan, Inf, -Inf) { Singular = [1, OneUp, OneDown, 0, 3e8, 1e30, 1e200] }, Ulp(4), gradDomain: new(1.2, 4)),
            U(UnaryOp.Atanh, (x, y, g) => g / (1.0 - x * x), new(-0.99, 0.99, Nan, Inf) { Singular = [1, -1, OneUp, OneDown, -OneDown, Tiny, 0.5] }, Ulp(4), gradDomain: new(-0.9, 0.9)),
            U(UnaryOp.Hardsigmoid, (x, y, g) => g * Pick((x > -3.0) & (x < 3.0), 1.0 / 6, 0.0, x), new(-5, 5, Nan, Inf, -Inf, 0.0) { Singular = [3, -3, 2.9999, -2.9999] }, Ulp(2.5), gradDomain: new(-5, 5)),
            U(UnaryOp.Hardswish, (x, y, g) => g * Pick(x < -3.0, 0.0, Pick(x <= 3.0, x / 3.0 + 0.5, 1.0)), new(-5, 5, Nan, Inf, -Inf, 0.0) { Singular = [3, -3, 2.9999, -2.9999] }, Ulp(3), gradDomain: new(-5, 5)),
            U(UnaryOp.Selu, (x, y, g) => g * Pick(x > 0.0, Reference.SeluScale, y + Reference.SeluScaleAlpha), new(-6, 6, Nan, Inf, -Inf, 0.0) { Singular = [Tiny, -Tiny, -20, -88.72, 1e30] }, ExpLike(4)),
            U(UnaryOp.Mish, (x, y, g) => g * MishGrad(x), new(-6, 6, Nan, Inf, -Inf) { Singular = [Tiny, -20, -88.72, -103.9, 30] }, ExpLike(5)),
            U(UnaryOp.Softsign, (x, y, g) => g / (1.0 + x.Abs()).Square(), new(-6, 6, Nan, Inf, -Inf, 0.0) { Singular = [Tiny, 1e30] }, Ulp(2.5)),
            P(UnaryOp.Hardtanh, (x, y, g, p) => g * ((x > p.A) & (x < p.B)).To(x.DType), new(-3, 3, Nan, Inf, -Inf, 0.0) { Singular = [1, -1, 0.5, 2] }, Exact, HardtanhDefault, new(-0.5, 2)),
            P(UnaryOp.Elu, (x, y, g, p) => g * Pick(x > 0.0, 1.0, y + p.A), new(-6, 6, Nan, Inf, -Inf, 0.0) { Singular = [Tiny, -Tiny, -20, -88.72] }, ExpLike(4), AlphaDefault, new(0.3)),
            P(UnaryOp.Celu, (x, y, g, p) => g * Pick(x > 0.0, 1.0, y / p.A + 1.0), new(-6, 6, Nan, Inf, -Inf, 0.0) { Singular = [Tiny, -Tiny, -20, -88.72] }, ExpLike(4), AlphaDefault, new(2.5)),
            P(UnaryOp.LeakyRelu, (x, y, g, p) => g * Pick(x > 0.0, 1.0, p.A, x), new(-6, 6, Nan, Inf, -Inf, 0.0) { Singular = [Tiny, -Tiny, 1e30, -1e30] }, Rounded, LeakyReluDefault, new(0.2)),
        ];

        // tanh(softplus x) + x sigmoid(x) (1 - tanh^2(softplus x)).
        static Tensor MishGrad(Tensor x) { var t = x.Softplus().Tanh(); return t + x * x.Sigmoid() * (1.0 - t * t); }

        // g * (s (1 + x (1 - s))) in this order: the shipped checkpoint's training rounds that way.
        static Tensor SiluGrad(Tensor x) { var s = x.Sigmoid(); return s * (1.0 + x * (1.0 - s)); }

        static Tensor GeluTanhGrad(Tensor x)
        {
            const double c = 0.7978845608028654; // sqrt(2/pi)
            var t = ((x + x * x * x * 0.044715) * c).Tanh();
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + x * x * (3 * 0.044715));
        }

        // Ties split the gradient evenly, so max(x, x) has gradient 1 in x.
        static Tensor?[] MaxMinGrad(Tensor g, Tensor a, Tensor b, Tensor aWins, Tensor tie)
        {
            var wa = aWins.To(g.DType) + tie.To(g.DType) * 0.5;
            return [(g * wa).SumTo(a.Shape), (g * (1.0 - wa)).SumTo(b.Shape)];
        }

        static readonly DType[] Numbers = DTypeLists.Numbers, Floats = DTypeLists.Floats;

        /// <summary>The binary primitives, in <see cref="BinaryOp"/> order.</summary>
        public static IReadOnlyList<BinaryOpDefinition> BinaryOps { get; } =
        [
            new(BinaryOp.Add, (a, b, y, g) => [g.SumTo(a.Shape), g.SumTo(b.Shape)], new(-3, 3, Nan, Inf), new(-3, 3), Numbers, Rounded),
            new(BinaryOp.Sub, (a, b, y, g) => [g.SumTo(a.Shape), (-g).SumTo(b.Shape)], new(-3, 3, Nan, Inf), new(-3, 3), Numbers, Rounded),
            new(BinaryOp.Mul, (a, b, y, g) => [(g * b).SumTo(a.Shape), (g * a).SumTo(b.Shape)], new(-3, 3, Nan, Inf), new(-3, 3), Numbers, Rounded),
            new(BinaryOp.Div, (a, b, y, g) => [(g / b).SumTo(a.Shape), (-g * a / (b * b)).SumTo(b.Shape)], new(-3, 3, Nan, Inf), new(0.5, 3), Numbers, Ulp(2.5)),
            new(BinaryOp.Pow, (a, b, y, g) => [(g * b * Tensor.Pow(a, b - 1.0)).SumTo(a.Shape), b.RequiresGrad ? (g * y * Tensor.Where(a > 0.0, a, a.OnesLike()).Log()).SumTo(b.Shape) : null],
                new(0.1, 3, Nan), new(-3, 3), Floats, ExpLike(16)),
            new(BinaryOp.Max, (a, b, y, g) => MaxMinGrad(g, a, b, a > b, a.Eq(b)), new(-3, 3, Nan, Inf, -Inf), new(-3, 3), Numbers, Exact),
            new(BinaryOp.Min, (a, b, y, g) => MaxMinGrad(g, a, b, a < b, a.Eq(b)), new(-3, 3, Nan, Inf, -Inf), new(-3, 3), Numbers, Exact),
            new(BinaryOp.Atan2, (a, b, y, g) => [(g * b / (a * a + b * b)).SumTo(a.Shape), (-g * a / (a * a + b * b)).SumTo(b.Shape)], new(-3, 3, Nan), new(-3, 3), Floats, Ulp(6)),
        ];

        /// <summary>The comparisons, in <see cref="CompareOp"/> order.</summary>
        public static IReadOnlyList<CompareOpDefinition> Comparisons { get; } = [.. Enum.GetValues<CompareOp>().Select(op => new CompareOpDefinition(op))];

        /// <summary>The definition of unary primitive <paramref name="op"/>.</summary>
        public static UnaryOpDefinition Of(UnaryOp op) => Unary[(int)op];

        /// <summary>The definition of binary primitive <paramref name="op"/>.</summary>
        public static BinaryOpDefinition Binary(BinaryOp op) => BinaryOps[(int)op];

        /// <summary>The bitwise primitives, in <see cref="BitwiseOp"/> order; the shifts' counts run from -7 to 70, past both integer widths.</summary>
        public static IReadOnlyList<BitwiseOpDefinition> BitwiseOps { get; } =
            [.. Enum.GetValues<BitwiseOp>().Select(op => new BitwiseOpDefinition(op, op is BitwiseOp.LeftShift or BitwiseOp.RightShift ? new Domain(-1, 10) : Domain.Default))];

        /// <summary>Every definition of the family.</summary>
        public static IReadOnlyList<OpDefinition> All { get; } =
            [.. Unary, .. BinaryOps, .. BitwiseOps, .. Comparisons, new SelectDefinition(false), new SelectDefinition(true), .. ValueClassDefinition.All];
    }
}

namespace Kiln
{
    public partial class Tensor
    {
        /// <summary>
        /// Applies a unary primitive elementwise (Float32 or Float64), a parametrised one with PyTorch's default parameters;
        /// its gradient is the rule in <see cref="ElementwiseOps.Unary"/>.
        /// </summary>
        public Tensor Apply(UnaryOp op) => Apply(op, ElementwiseOps.Of(op).Parameters[0]);

        /// <summary>
        /// Applies a unary primitive elementwise (Float32 or Float64) with parameters <paramref name="parameters"/> (used by
        /// hardtanh, elu, celu and leaky_relu, rounded to this tensor's dtype; ignored by the others).
        /// </summary>
        /// <exception cref="ArgumentException">The parameters are outside the op's definition (hardtanh's min above its max, celu's alpha 0, a NaN or infinite parameter).</exception>
        public Tensor Apply(UnaryOp op, UnaryParams parameters)
        {
            var def = ElementwiseOps.Of(op);
            Storage.ThrowIfDisposed(def.Name);
            ElementwiseOps.CheckDType(def, this, def.Name);
            ElementwiseOps.CheckParams(op, parameters);
            var y = Empty(Shape, DType, Device);
            Backend.Unary(op, this, y, parameters);
            return DType.IsFloating() && Tracks(this) ? RecordUnary(def, this, y, parameters) : y;
        }

        static Tensor RecordUnary(UnaryOpDefinition def, Tensor x, Tensor y, UnaryParams parameters)
        {
            var rule = def.Gradient;
            return Record(y, def.Name, [x], g => [rule is null ? g * 0.0 : rule(x, y, g, parameters)]);
        }

        /// <summary>Applies a unary primitive in place (not allowed on tensors in the autodiff graph), a parametrised one with PyTorch's default parameters.</summary>
        public Tensor Apply_(UnaryOp op) => Apply_(op, ElementwiseOps.Of(op).Parameters[0]);

        /// <summary>Applies a unary primitive with parameters <paramref name="parameters"/> in place (not allowed on tensors in the autodiff graph).</summary>
        /// <exception cref="ArgumentException">The parameters are outside the op's definition.</exception>
        public Tensor Apply_(UnaryOp op, UnaryParams parameters)
        {
            var def = ElementwiseOps.Of(op);
            string name = def.Name + "_";
            CheckInPlace(name);
            ElementwiseOps.CheckDType(def, this, name);
            ElementwiseOps.CheckParams(op, parameters);
            Backend.Unary(op, this, this, parameters);
            return this;
        }

        /// <summary>-x</summary>
        public Tensor Neg() => Apply(UnaryOp.Neg);
        /// <summary>|x|</summary>
        public Tensor Abs() => Apply(UnaryOp.Abs);
        /// <summary>e^x</summary>
        public Tensor Exp() => Apply(UnaryOp.Exp);
        /// <summary>ln x</summary>
        public Tensor Log() => Apply(UnaryOp.Log);
        /// <summary>ln(1 + x), accurate near 0.</summary>
        public Tensor Log1p() => Apply(UnaryOp.Log1p);
        /// <summary>e^x - 1, accurate near 0.</summary>
        public Tensor Expm1() => Apply(UnaryOp.Expm1);
        /// <summary>sqrt x</summary>
        public Tensor Sqrt() => Apply(UnaryOp.Sqrt);
        /// <summary>1 / sqrt x</summary>
        public Tensor Rsqrt() => Apply(UnaryOp.Rsqrt);
        /// <summary>1 / (1 + e^-x)</summary>
        public Tensor Sigmoid() => Apply(UnaryOp.Sigmoid);
        /// <summary>tanh x</summary>
        public Tensor Tanh() => Apply(UnaryOp.Tanh);
        /// <summary>max(x, 0)</summary>
        public Tensor Relu() => Apply(UnaryOp.Relu);
        /// <summary>GELU: x Phi(x) (exact, default) or its tanh approximation.</summary>
        public Tensor Gelu(bool approximateTanh = false) => Apply(approximateTanh ? UnaryOp.GeluTanh : UnaryOp.GeluErf);
        /// <summary>x sigmoid(x)</summary>
        public Tensor Silu() => Apply(UnaryOp.Silu);
        /// <summary>ln(1 + e^x), without overflow.</summary>
        public Tensor Softplus() => Apply(UnaryOp.Softplus);
        /// <summary>The error function.</summary>
        public Tensor Erf() => Apply(UnaryOp.Erf);
        /// <summary>The inverse error function.</summary>
        public Tensor Erfinv() => Apply(UnaryOp.Erfinv);
        /// <summary>The standard normal CDF Phi(x).</summary>
        public Tensor NormalCdf() => Apply(UnaryOp.NormalCdf);
        /// <summary>The standard normal quantile Phi^-1(p).</summary>
        public Tensor NormalIcdf() => Apply(UnaryOp.NormalIcdf);
        /// <summary>-1, 0 or 1.</summary>
        public Tensor Sign() => Apply(UnaryOp.Sign);
        /// <summary>1 / x</summary>
        public Tensor Reciprocal() => Apply(UnaryOp.Reciprocal);
        /// <summary>x^2</summary>
        public Tensor Square() => Apply(UnaryOp.Square);
        /// <summary>sin x</summary>
        public Tensor Sin() => Apply(UnaryOp.Sin);
        /// <summary>cos x</summary>
        public Tensor Cos() => Apply(UnaryOp.Cos);
        /// <summary>The largest integer &lt;= x (gradient 0).</summary>
        public Tensor Floor() => Apply(UnaryOp.Floor);
        /// <summary>The smallest integer &gt;= x (gradient 0).</summary>
        public Tensor Ceil() => Apply(UnaryOp.Ceil);
        /// <summary>The nearest integer, halves to even (gradient 0).</summary>
        public Tensor Round() => Apply(UnaryOp.Round);
        /// <summary>The integer part, toward zero (gradient 0).</summary>
        public Tensor Trunc() => Apply(UnaryOp.Trunc);
        /// <summary>x - trunc x, the fractional part with the sign of x (gradient 1), as <c>torch.frac</c>.</summary>
        public Tensor Frac() => Apply(UnaryOp.Frac);
        /// <summary>tan x</summary>
        public Tensor Tan() => Apply(UnaryOp.Tan);
        /// <summary>arcsin x (NaN outside [-1, 1]).</summary>
        public Tensor Asin() => Apply(UnaryOp.Asin);
        /// <summary>arccos x (NaN outside [-1, 1]).</summary>
        public Tensor Acos() => Apply(UnaryOp.Acos);
        /// <summary>arctan x</summary>
        public Tensor Atan() => Apply(UnaryOp.Atan);
        /// <summary>sinh x</summary>
        public Tensor Sinh() => Apply(UnaryOp.Sinh);
        /// <summary>cosh x</summary>
        public Tensor Cosh() => Apply(UnaryOp.Cosh);
        /// <summary>arsinh x</summary>
        public Tensor Asinh() => Apply(UnaryOp.Asinh);
        /// <summary>arcosh x (NaN below 1).</summary>
        public Tensor Acosh() => Apply(UnaryOp.Acosh);
        /// <summary>artanh x (+-infinity at +-1, NaN outside [-1, 1]).</summary>
        public Tensor Atanh() => Apply(UnaryOp.Atanh);
        /// <summary>min(max(x + 3, 0), 6) / 6, as <c>torch.nn.functional.hardsigmoid</c>.</summary>
        public Tensor Hardsigmoid() => Apply(UnaryOp.Hardsigmoid);
        /// <summary>x min(max(x + 3, 0), 6) / 6, as <c>torch.nn.functional.hardswish</c> (NaN at -infinity, as its formula gives).</summary>
        public Tensor Hardswish() => Apply(UnaryOp.Hardswish);
        /// <summary>scale (max(0, x) + min(0, alpha (e^x - 1))) with SELU's fixed scale and alpha, as <c>torch.nn.functional.selu</c>.</summary>
        public Tensor Selu() => Apply(UnaryOp.Selu);
        /// <summary>x tanh(softplus x), as <c>torch.nn.functional.mish</c> (NaN at -infinity, as its formula gives).</summary>
        public Tensor Mish() => Apply(UnaryOp.Mish);
        /// <summary>x / (1 + |x|), as <c>torch.nn.functional.softsign</c> (NaN at +-infinity, as its formula gives).</summary>
        public Tensor Softsign() => Apply(UnaryOp.Softsign);
        /// <summary>clamp(x, minVal, maxVal) with gradient 1 strictly inside, as <c>torch.nn.functional.hardtanh</c>.</summary>
        /// <exception cref="ArgumentException">minVal &gt; maxVal, or either is NaN.</exception>
        public Tensor Hardtanh(double minVal = -1, double maxVal = 1) => Apply(UnaryOp.Hardtanh, new(minVal, maxVal));
        /// <summary>x for x &gt; 0, else alpha (e^x - 1), as <c>torch.nn.functional.elu</c>.</summary>
        /// <exception cref="ArgumentOutOfRangeException">alpha is not finite.</exception>
        public Tensor Elu(double alpha = 1) => Apply(UnaryOp.Elu, new(alpha));
        /// <summary>max(0, x) + min(0, alpha (e^(x/alpha) - 1)), as <c>torch.nn.functional.celu</c>.</summary>
        /// <exception cref="ArgumentOutOfRangeException">alpha is 0 or not finite.</exception>
        public Tensor Celu(double alpha = 1) => Apply(UnaryOp.Celu, new(alpha));
        /// <summary>x for x &gt; 0, else negativeSlope x, as <c>torch.nn.functional.leaky_relu</c>.</summary>
        /// <exception cref="ArgumentOutOfRangeException">negativeSlope is not finite.</exception>
        public Tensor LeakyRelu(double negativeSlope = 0.01) => Apply(UnaryOp.LeakyRelu, new(negativeSlope));
    }
}
