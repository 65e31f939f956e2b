using Kiln.Kernels;
using Kiln.Ops;

namespace Kiln.Ops
{
    /// <summary>
    /// A unary primitive: its kernel code <see cref="Op"/> (the CPU and GPU kernels of kernels/*/Elementwise.cs switch on
    /// it, <see cref="Reference.Unary"/> defines it), its derivative rule in tensor ops, the values it is validated on, and
    /// the values its gradient is checked on by finite differences.
    /// </summary>
    public sealed class UnaryOpDefinition : OpDefinition
    {
        internal UnaryOpDefinition(UnaryOp op, Func<Tensor, Tensor, Tensor, Tensor>? gradient, Domain domain, Tolerance tolerance, Domain? gradDomain = null)
            : base("unary." + op.ToString().ToLowerInvariant(), "elementwise", [DType.Float32, DType.Float64], domain, tolerance)
        {
            Op = op;
            Gradient = gradient;
            GradDomain = gradDomain ?? new Domain(Math.Max(domain.Low, -2), Math.Min(domain.High, 2));
        }

        /// <summary>The kernel code.</summary>
        public UnaryOp Op { get; }
        /// <summary>(x, y = f(x), upstream g) -&gt; g f'(x) in tensor ops, so it runs on any device and differentiates again; null where f' is 0 almost everywhere.</summary>
        public Func<Tensor, Tensor, Tensor, Tensor>? Gradient { get; }
        /// <summary>Where central finite differences of f are accurate (away from kinks and poles).</summary>
        public Domain GradDomain { get; }

        /// <inheritdoc/>
        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var expected = x.ToDoubleArray().Select(v => Reference.Unary(Op, v)).ToArray();
            return Tolerance.Check(expected, x.Apply(Op).ToDoubleArray(), dtype, c, Name);
        }

        /// <inheritdoc/>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            var specials = SpecialValues.Of(dtype, Domain);
            if (specials.Count == 0) return [];
            var xs = specials.Select(s => s.Value).ToArray();
            var x = Tensor.FromArray(xs).To(dtype).To(device);
            var expected = xs.Select(v => Reference.Unary(Op, v)).ToArray();
            return SpecialValues.Judge(Tolerance, dtype, relaxed, [.. specials.Select(s => s.Class)], expected, x.Apply(Op).ToDoubleArray(), i => [xs[i]]);
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

    /// <summary>An elementwise comparison: a Bool result that must equal the reference exactly.</summary>
    public sealed class CompareOpDefinition : OpDefinition
    {
        internal CompareOpDefinition(CompareOp op)
            : base("compare." + op.ToString().ToLowerInvariant(), "elementwise", [DType.Float32, DType.Float64, DType.Int32, DType.Int64], new Domain(-3, 3, double.NaN, 0.0), Tolerance.Exact) => Op = op;

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
            : base(clamp ? "select.clamp" : "select.where", "elementwise", [DType.Float32, DType.Float64, DType.Int32, DType.Int64], new Domain(-3, 3, double.NaN), Tolerance.Exact) =>
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

    /// <summary>The elementwise family's definitions.</summary>
    public static class ElementwiseOps
    {
        static readonly double InvSqrt2Pi = 1.0 / Math.Sqrt(2 * Math.PI), Sqrt2Pi = Math.Sqrt(2 * Math.PI), TwoOverSqrtPi = 2.0 / Math.Sqrt(Math.PI), SqrtPiOver2 = Math.Sqrt(Math.PI) / 2.0;
        static readonly double Nan = double.NaN, Inf = double.PositiveInfinity;

        // Halves and signed zeros are where the rounding modes differ.
        static readonly Domain Rounding = new(-6, 6, Nan, Inf, -Inf, 0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 2.5, 1e15 + 0.5);

        static UnaryOpDefinition U(UnaryOp op, Func<Tensor, Tensor, Tensor, Tensor>? grad, Domain domain, Tolerance tol, Domain? gradDomain = null) =>
            new(op, grad, domain, tol, gradDomain);

        // Float32 budgets are the OpenCL conformance suite's (add, sub, mul correctly rounded; divide 2.5 ulp; sqrt 3; rsqrt 2;
        // exp, expm1, log 3; log1p 2; sin, cos 4; tanh 5; pow 16; erf 16; atan2 6), Float64 the same. Kiln's fused functions
        // take the budget of their costliest part: sigmoid, silu and softplus 4 (exp, then a division), erfinv and the normal
        // CDF and quantile 16 (erf's). Relaxed (fast-math) budgets follow the suite's relaxed rules: exp-based
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
            U(UnaryOp.Neg, (x, y, g) => -g, new(-6, 6, Nan, Inf, -Inf, 0.0), Exact),
            U(UnaryOp.Abs, (x, y, g) => g * x.Sign(), new(-6, 6, Nan, Inf, -Inf, 0.0), Exact),
            U(UnaryOp.Exp, (x, y, g) => g * y, new(-10, 10, Nan, Inf, -Inf) { Singular = [88.72, -87.3, -103.9, Tiny] }, ExpLike(3)),
            U(UnaryOp.Log, (x, y, g) => g / x, new(0.05, 5, Nan, Inf, 0.0) { Singular = [1, OneUp, OneDown, -Tiny] }, LogLike(3), gradDomain: new(0.3, 3)),
            U(UnaryOp.Log1p, (x, y, g) => g / (x + 1.0), new(-0.9, 5, Nan, Inf) { Singular = [-1, -OneDown, Tiny, -Tiny, -2] }, LogLike(2), gradDomain: new(-0.5, 3)),
            U(UnaryOp.Expm1, (x, y, g) => g * (y + 1.0), new(-10, 10, Nan, Inf, -Inf) { Singular = [Tiny, -Tiny, 88.72, -20] }, ExpLike(3)),
            U(UnaryOp.Sqrt, (x, y, g) => g * 0.5 / y, new(0.05, 5, Nan, Inf, 0.0) { Singular = [-Tiny, 4, 2] }, Ulp(3), gradDomain: new(0.3, 3)),
            U(UnaryOp.Rsqrt, (x, y, g) => g * -0.5 * y * y * y, new(0.05, 5, Nan, Inf) { Singular = [-Tiny, 4, 0.25] }, Ulp(2), gradDomain: new(0.3, 3)),
            U(UnaryOp.Sigmoid, (x, y, g) => g * y * (1.0 - y), new(-6, 6, Nan, Inf, -Inf) { Singular = [88.72, -88.72, -103.9, 17, -17] }, ExpLike(4)),
            U(UnaryOp.Tanh, (x, y, g) => g * (1.0 - y * y), new(-6, 6, Nan, Inf, -Inf) { Singular = [Tiny, -Tiny, 9.01, -20, 0.55] }, ExpLike(5)),
            U(UnaryOp.Relu, (x, y, g) => g * x.Apply(UnaryOp.Step), new(-6, 6, Inf, -Inf), Exact),
            U(UnaryOp.GeluErf, (x, y, g) => g * (x.NormalCdf() + x * (x * x * -0.5).Exp() * InvSqrt2Pi), new(-6, 6, Nan) { Singular = [-10, -13, -38] }, Gelu),
            U(UnaryOp.GeluTanh, (x, y, g) => g * GeluTanhGrad(x), new(-6, 6, Nan) { Singular = [-10, -13] }, Gelu),
            U(UnaryOp.Silu, (x, y, g) => g * SiluGrad(x), new(-6, 6, Nan) { Singular = [-88.72, -103.9, 30] }, ExpLike(4)),
            U(UnaryOp.Softplus, (x, y, g) => g * x.Sigmoid(), new(-6, 6, Nan, Inf) { Singular = [-88.72, -103.9, 17, 30] }, ExpLike(4)),
            U(UnaryOp.Erf, (x, y, g) => g * (x * x * -1.0).Exp() * TwoOverSqrtPi, new(-6, 6, Nan, Inf, -Inf) { Singular = [Tiny, -Tiny, 0.5, 2.5, 4] }, Ulp(16)),
            U(UnaryOp.Erfinv, (x, y, g) => g * (y * y).Exp() * SqrtPiOver2, new(-0.99, 0.99, Nan) { Singular = [1, -1, OneDown, -OneDown, Tiny] }, Ulp(16), gradDomain: new(-0.8, 0.8)),
            U(UnaryOp.NormalCdf, (x, y, g) => g * (x * x * -0.5).Exp() * InvSqrt2Pi, new(-6, 6, Nan, Inf, -Inf) { Singular = [-10, -13, -38, 8] }, Ulp(16)),
            U(UnaryOp.NormalIcdf, (x, y, g) => g * (y * y * 0.5).Exp() * Sqrt2Pi, new(0.01, 0.99, Nan) { Singular = [1, OneDown, 1e-20, 0.5] }, Ulp(16), gradDomain: new(0.1, 0.9)),
            U(UnaryOp.Sign, null, new(-6, 6, Nan, Inf, -Inf, 0.0), Exact),
            U(UnaryOp.Reciprocal, (x, y, g) => -g * y * y, new(0.2, 4, Nan, Inf, -Inf), Ulp(2.5), gradDomain: new(0.3, 3)),
            U(UnaryOp.Square, (x, y, g) => g * 2.0 * x, new(-6, 6, Nan, Inf, -Inf) { Singular = [1.9e19, 1e-23] }, Rounded),
            U(UnaryOp.Sin, (x, y, g) => g * x.Cos(), new(-6, 6, Nan) { Singular = [Pi, Pi / 2, 1e6, 1e30] }, Trig(4)),
            U(UnaryOp.Cos, (x, y, g) => -g * x.Sin(), new(-6, 6, Nan) { Singular = [Pi, Pi / 2, 1e6, 1e30] }, Trig(4)),
            U(UnaryOp.Step, null, new(-6, 6, Inf, -Inf, 0.0), Exact),
            U(UnaryOp.Floor, null, Rounding, Exact),
            U(UnaryOp.Ceil, null, Rounding, Exact),
            U(UnaryOp.Round, null, Rounding, Exact),
            U(UnaryOp.Trunc, null, Rounding, Exact),
        ];

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

        static readonly DType[] Numbers = [DType.Float32, DType.Float64, DType.Int32, DType.Int64], Floats = [DType.Float32, DType.Float64];

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

        /// <summary>Every definition of the family.</summary>
        public static IReadOnlyList<OpDefinition> All { get; } = [.. Unary, .. BinaryOps, .. Comparisons, new SelectDefinition(false), new SelectDefinition(true)];
    }
}

namespace Kiln
{
    public partial class Tensor
    {
        /// <summary>Applies a unary primitive elementwise (Float32 or Float64); its gradient is the rule in <see cref="ElementwiseOps.Unary"/>.</summary>
        public Tensor Apply(UnaryOp op)
        {
            var def = ElementwiseOps.Of(op);
            Storage.ThrowIfDisposed(def.Name);
            Check.Floating(this, def.Name, "input");
            var y = Empty(Shape, DType, Device);
            Backend.Unary(op, this, y);
            var rule = def.Gradient;
            return Record(y, def.Name, [this], g => [rule is null ? g * 0.0 : rule(this, y, g)]);
        }

        /// <summary>Applies a unary primitive in place (not allowed on tensors in the autodiff graph).</summary>
        public Tensor Apply_(UnaryOp op)
        {
            string name = ElementwiseOps.Of(op).Name + "_";
            CheckInPlace(name);
            Check.Floating(this, name, "input");
            Backend.Unary(op, this, this);
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
    }
}
