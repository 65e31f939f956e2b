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
            var (rtol, atol) = Tolerance.For(dtype);
            return CheckResult.Compare(expected, x.Apply(Op).ToDoubleArray(), rtol, atol, Name, dtype);
        }
    }

    /// <summary>A binary primitive with NumPy broadcasting: kernel code, derivative rule, and the values of each operand.</summary>
    public sealed class BinaryOpDefinition : OpDefinition
    {
        internal BinaryOpDefinition(BinaryOp op, Func<Tensor, Tensor, Tensor, Tensor, Tensor?[]> gradient, Domain domain, Domain other, IReadOnlyList<DType> dtypes)
            : base("binary." + op.ToString().ToLowerInvariant(), "elementwise", dtypes, domain, new Tolerance(2))
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
            var y = Tensor.Binary(Op, a, b);
            var ad = a.BroadcastTo(y.Shape).ToDoubleArray();
            var bd = b.BroadcastTo(y.Shape).ToDoubleArray();
            var expected = ad.Select((v, i) => Reference.Binary(Op, v, bd[i])).ToArray();
            if (!dtype.IsFloating()) return CheckResult.Equal(expected.Select(v => Math.Truncate(v)).ToArray(), y.ToDoubleArray(), Name);
            var (rtol, atol) = Tolerance.For(dtype);
            return CheckResult.Compare(expected, y.ToDoubleArray(), rtol, atol, Name, dtype);
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
    }

    /// <summary>The elementwise family's definitions.</summary>
    public static class ElementwiseOps
    {
        static readonly double InvSqrt2Pi = 1.0 / Math.Sqrt(2 * Math.PI), Sqrt2Pi = Math.Sqrt(2 * Math.PI), TwoOverSqrtPi = 2.0 / Math.Sqrt(Math.PI), SqrtPiOver2 = Math.Sqrt(Math.PI) / 2.0;
        static readonly double Nan = double.NaN, Inf = double.PositiveInfinity;

        // Halves and signed zeros are where the rounding modes differ.
        static readonly Domain Rounding = new(-6, 6, Nan, Inf, -Inf, 0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 2.5, 1e15 + 0.5);

        static UnaryOpDefinition U(UnaryOp op, Func<Tensor, Tensor, Tensor, Tensor>? grad, Domain domain, double tol = 2, Domain? gradDomain = null) =>
            new(op, grad, domain, new Tolerance(tol), gradDomain);

        /// <summary>The unary primitives, in <see cref="UnaryOp"/> order.</summary>
        public static IReadOnlyList<UnaryOpDefinition> Unary { get; } =
        [
            U(UnaryOp.Neg, (x, y, g) => -g, new(-6, 6, Nan, Inf, -Inf, 0.0)),
            U(UnaryOp.Abs, (x, y, g) => g * x.Sign(), new(-6, 6, Nan, Inf, -Inf, 0.0)),
            U(UnaryOp.Exp, (x, y, g) => g * y, new(-10, 10, Nan, Inf, -Inf)),
            U(UnaryOp.Log, (x, y, g) => g / x, new(0.05, 5, Nan, Inf, 0.0), gradDomain: new(0.3, 3)),
            U(UnaryOp.Log1p, (x, y, g) => g / (x + 1.0), new(-0.9, 5, Nan, Inf), gradDomain: new(-0.5, 3)),
            U(UnaryOp.Expm1, (x, y, g) => g * (y + 1.0), new(-10, 10, Nan, Inf, -Inf)),
            U(UnaryOp.Sqrt, (x, y, g) => g * 0.5 / y, new(0.05, 5, Nan, Inf, 0.0), gradDomain: new(0.3, 3)),
            U(UnaryOp.Rsqrt, (x, y, g) => g * -0.5 * y * y * y, new(0.05, 5, Nan, Inf), gradDomain: new(0.3, 3)),
            U(UnaryOp.Sigmoid, (x, y, g) => g * y * (1.0 - y), new(-6, 6, Nan, Inf, -Inf)),
            U(UnaryOp.Tanh, (x, y, g) => g * (1.0 - y * y), new(-6, 6, Nan, Inf, -Inf)),
            U(UnaryOp.Relu, (x, y, g) => g * x.Apply(UnaryOp.Step), new(-6, 6, Inf, -Inf)),
            U(UnaryOp.GeluErf, (x, y, g) => g * (x.NormalCdf() + x * (x * x * -0.5).Exp() * InvSqrt2Pi), new(-6, 6, Nan)),
            U(UnaryOp.GeluTanh, (x, y, g) => g * GeluTanhGrad(x), new(-6, 6, Nan), tol: 8),
            U(UnaryOp.Silu, (x, y, g) => g * SiluGrad(x), new(-6, 6, Nan)),
            U(UnaryOp.Softplus, (x, y, g) => g * x.Sigmoid(), new(-6, 6, Nan, Inf)),
            U(UnaryOp.Erf, (x, y, g) => g * (x * x * -1.0).Exp() * TwoOverSqrtPi, new(-6, 6, Nan, Inf, -Inf)),
            U(UnaryOp.Erfinv, (x, y, g) => g * (y * y).Exp() * SqrtPiOver2, new(-0.99, 0.99, Nan), tol: 8, gradDomain: new(-0.8, 0.8)),
            U(UnaryOp.NormalCdf, (x, y, g) => g * (x * x * -0.5).Exp() * InvSqrt2Pi, new(-6, 6, Nan, Inf, -Inf)),
            U(UnaryOp.NormalIcdf, (x, y, g) => g * (y * y * 0.5).Exp() * Sqrt2Pi, new(0.01, 0.99, Nan), tol: 8, gradDomain: new(0.1, 0.9)),
            U(UnaryOp.Sign, null, new(-6, 6, Nan, Inf, -Inf, 0.0)),
            U(UnaryOp.Reciprocal, (x, y, g) => -g * y * y, new(0.2, 4, Nan, Inf, -Inf), gradDomain: new(0.3, 3)),
            U(UnaryOp.Square, (x, y, g) => g * 2.0 * x, new(-6, 6, Nan, Inf, -Inf)),
            U(UnaryOp.Sin, (x, y, g) => g * x.Cos(), new(-6, 6, Nan), tol: 8),
            U(UnaryOp.Cos, (x, y, g) => -g * x.Sin(), new(-6, 6, Nan), tol: 8),
            U(UnaryOp.Step, null, new(-6, 6, Inf, -Inf, 0.0)),
            U(UnaryOp.Floor, null, Rounding, tol: 0),
            U(UnaryOp.Ceil, null, Rounding, tol: 0),
            U(UnaryOp.Round, null, Rounding, tol: 0),
            U(UnaryOp.Trunc, null, Rounding, tol: 0),
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
            new(BinaryOp.Add, (a, b, y, g) => [g.SumTo(a.Shape), g.SumTo(b.Shape)], new(-3, 3, Nan, Inf), new(-3, 3), Numbers),
            new(BinaryOp.Sub, (a, b, y, g) => [g.SumTo(a.Shape), (-g).SumTo(b.Shape)], new(-3, 3, Nan, Inf), new(-3, 3), Numbers),
            new(BinaryOp.Mul, (a, b, y, g) => [(g * b).SumTo(a.Shape), (g * a).SumTo(b.Shape)], new(-3, 3, Nan, Inf), new(-3, 3), Numbers),
            new(BinaryOp.Div, (a, b, y, g) => [(g / b).SumTo(a.Shape), (-g * a / (b * b)).SumTo(b.Shape)], new(-3, 3, Nan, Inf), new(0.5, 3), Numbers),
            new(BinaryOp.Pow, (a, b, y, g) => [(g * b * Tensor.Pow(a, b - 1.0)).SumTo(a.Shape), b.RequiresGrad ? (g * y * Tensor.Where(a > 0.0, a, a.OnesLike()).Log()).SumTo(b.Shape) : null],
                new(0.1, 3, Nan), new(-3, 3), Floats),
            new(BinaryOp.Max, (a, b, y, g) => MaxMinGrad(g, a, b, a > b, a.Eq(b)), new(-3, 3, Nan, Inf, -Inf), new(-3, 3), Numbers),
            new(BinaryOp.Min, (a, b, y, g) => MaxMinGrad(g, a, b, a < b, a.Eq(b)), new(-3, 3, Nan, Inf, -Inf), new(-3, 3), Numbers),
            new(BinaryOp.Atan2, (a, b, y, g) => [(g * b / (a * a + b * b)).SumTo(a.Shape), (-g * a / (a * a + b * b)).SumTo(b.Shape)], new(-3, 3, Nan), new(-3, 3), Floats),
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
    public sealed partial class Tensor
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
