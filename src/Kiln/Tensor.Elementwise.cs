using Kiln.Kernels;

namespace Kiln;

public sealed partial class Tensor
{
    // ---------------------------------------------------------------- unary

    /// <summary>Derivative rules of the unary primitives: (x, y = f(x), upstream g) -> g f'(x), in tensor ops.</summary>
    static Tensor UnaryGrad(UnaryOp op, Tensor x, Tensor y, Tensor g) => op switch
    {
        UnaryOp.Neg => -g,
        UnaryOp.Abs => g * x.Sign(),
        UnaryOp.Exp => g * y,
        UnaryOp.Log => g / x,
        UnaryOp.Log1p => g / (x + 1.0),
        UnaryOp.Expm1 => g * (y + 1.0),
        UnaryOp.Sqrt => g * 0.5 / y,
        UnaryOp.Rsqrt => g * -0.5 * y * y * y,
        UnaryOp.Sigmoid => g * y * (1.0 - y),
        UnaryOp.Tanh => g * (1.0 - y * y),
        UnaryOp.Relu => g * x.Apply(UnaryOp.Step),
        UnaryOp.GeluErf => g * (x.NormalCdf() + x * (x * x * -0.5).Exp() * (1.0 / Math.Sqrt(2 * Math.PI))),
        UnaryOp.GeluTanh => g * GeluTanhGrad(x),
        UnaryOp.Silu => g * SiluGrad(x),
        UnaryOp.Softplus => g * x.Sigmoid(),
        UnaryOp.Erf => g * (x * x * -1.0).Exp() * (2.0 / Math.Sqrt(Math.PI)),
        UnaryOp.Erfinv => g * (y * y).Exp() * (Math.Sqrt(Math.PI) / 2.0),
        UnaryOp.NormalCdf => g * (x * x * -0.5).Exp() * (1.0 / Math.Sqrt(2 * Math.PI)),
        UnaryOp.NormalIcdf => g * (y * y * 0.5).Exp() * Math.Sqrt(2 * Math.PI),
        UnaryOp.Sign or UnaryOp.Step => g * 0.0,
        UnaryOp.Reciprocal => -g * y * y,
        UnaryOp.Square => g * 2.0 * x,
        UnaryOp.Sin => g * x.Cos(),
        UnaryOp.Cos => -g * x.Sin(),
        _ => throw new NotSupportedException($"no gradient rule for {op}"),
    };

    static Tensor SiluGrad(Tensor x) { var s = x.Sigmoid(); return s * (1.0 + x * (1.0 - s)); }

    static Tensor GeluTanhGrad(Tensor x)
    {
        const double c = 0.7978845608028654; // sqrt(2/pi)
        var inner = (x + x * x * x * 0.044715) * c;
        var t = inner.Tanh();
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + x * x * (3 * 0.044715));
    }

    /// <summary>Applies a unary primitive elementwise (Float32 or Float64).</summary>
    public Tensor Apply(UnaryOp op)
    {
        Storage.ThrowIfDisposed(op.ToString());
        Check.Floating(this, op.ToString().ToLowerInvariant(), "input");
        var y = Empty(Shape, DType, Device);
        Backend.Unary(op, this, y);
        return Record(y, op.ToString(), [this], g => [UnaryGrad(op, this, y, g)]);
    }

    /// <summary>Applies a unary primitive in place (not allowed on tensors in the autodiff graph).</summary>
    public Tensor Apply_(UnaryOp op)
    {
        CheckInPlace(op.ToString().ToLowerInvariant() + "_");
        Check.Floating(this, op.ToString().ToLowerInvariant() + "_", "input");
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

    /// <summary>Clamps into [min, max] (either bound may be omitted); the gradient passes where the input is inside.</summary>
    /// <exception cref="ArgumentException">min &gt; max.</exception>
    public Tensor Clamp(double? min = null, double? max = null)
    {
        Storage.ThrowIfDisposed("clamp");
        double lo = min ?? double.NegativeInfinity, hi = max ?? double.PositiveInfinity;
        if (lo > hi) throw new ArgumentException($"clamp: min {lo} is greater than max {hi}", nameof(min));
        var y = Empty(Shape, DType, Device);
        Backend.Clamp(this, lo, hi, y);
        return Record(y, "clamp", [this], g => [g * ((this >= lo) & (this <= hi)).To(DType)]);
    }

    // ---------------------------------------------------------------- binary

    /// <summary>Broadcasts both operands and applies a binary primitive.</summary>
    public static Tensor Binary(BinaryOp op, Tensor a, Tensor b)
    {
        string name = op.ToString().ToLowerInvariant();
        a.Storage.ThrowIfDisposed(name); b.Storage.ThrowIfDisposed(name);
        Check.SameDType(a, b, name, "other");
        Check.SameDevice(a, b, name, "other");
        var shape = Shape.Broadcast(a.Shape, b.Shape, name);
        var y = Empty(shape, a.DType, a.Device);
        a.Backend.Binary(op, a.BroadcastTo(shape), b.BroadcastTo(shape), y);
        if (!a.DType.IsFloating()) return y;
        return Record(y, name, [a, b], g => op switch
        {
            BinaryOp.Add => [g.SumTo(a.Shape), g.SumTo(b.Shape)],
            BinaryOp.Sub => [g.SumTo(a.Shape), (-g).SumTo(b.Shape)],
            BinaryOp.Mul => [(g * b).SumTo(a.Shape), (g * a).SumTo(b.Shape)],
            BinaryOp.Div => [(g / b).SumTo(a.Shape), (-g * a / (b * b)).SumTo(b.Shape)],
            BinaryOp.Pow => [(g * b * Pow(a, b - 1.0)).SumTo(a.Shape), b.RequiresGrad ? (g * y * Where(a > 0.0, a, a.OnesLike()).Log()).SumTo(b.Shape) : null],
            BinaryOp.Max => MaxMinGrad(g, a, b, a > b, a.Eq(b)),
            BinaryOp.Min => MaxMinGrad(g, a, b, a < b, a.Eq(b)),
            BinaryOp.Atan2 => [(g * b / (a * a + b * b)).SumTo(a.Shape), (-g * a / (a * a + b * b)).SumTo(b.Shape)],
            _ => throw new NotSupportedException($"no gradient rule for {op}"),
        });
    }

    // Ties split the gradient evenly, so max(x, x) has gradient 1 in x.
    static Tensor?[] MaxMinGrad(Tensor g, Tensor a, Tensor b, Tensor aWins, Tensor tie)
    {
        var wa = aWins.To(g.DType) + tie.To(g.DType) * 0.5;
        return [(g * wa).SumTo(a.Shape), (g * (1.0 - wa)).SumTo(b.Shape)];
    }

    void BinaryInPlace(BinaryOp op, Tensor b)
    {
        string name = op.ToString().ToLowerInvariant() + "_";
        CheckInPlace(name);
        b.Storage.ThrowIfDisposed(name);
        Check.SameDType(this, b, name, "other");
        Check.SameDevice(this, b, name, "other");
        var shape = Shape.Broadcast(Shape, b.Shape, name);
        if (shape != Shape) throw new ShapeMismatchException(name, "other", Shape, b.Shape, "an in-place result must keep the tensor's shape");
        Backend.Binary(op, this, b.BroadcastTo(shape), this);
    }

    /// <summary>a + b with broadcasting.</summary>
    public Tensor Add(Tensor other) => Binary(BinaryOp.Add, this, other);
    /// <summary>a - b with broadcasting.</summary>
    public Tensor Sub(Tensor other) => Binary(BinaryOp.Sub, this, other);
    /// <summary>a * b with broadcasting.</summary>
    public Tensor Mul(Tensor other) => Binary(BinaryOp.Mul, this, other);
    /// <summary>a / b with broadcasting.</summary>
    public Tensor Div(Tensor other) => Binary(BinaryOp.Div, this, other);
    /// <summary>a ^ b with broadcasting.</summary>
    public static Tensor Pow(Tensor a, Tensor b) => Binary(BinaryOp.Pow, a, b);
    /// <summary>x ^ p.</summary>
    public Tensor Pow(double p) => Binary(BinaryOp.Pow, this, ScalarLike(p));
    /// <summary>Elementwise maximum with broadcasting.</summary>
    public static Tensor Maximum(Tensor a, Tensor b) => Binary(BinaryOp.Max, a, b);
    /// <summary>Elementwise minimum with broadcasting.</summary>
    public static Tensor Minimum(Tensor a, Tensor b) => Binary(BinaryOp.Min, a, b);
    /// <summary>atan2(a, b) with broadcasting.</summary>
    public static Tensor Atan2(Tensor a, Tensor b) => Binary(BinaryOp.Atan2, a, b);

    /// <summary>this += other in place.</summary>
    public Tensor Add_(Tensor other) { BinaryInPlace(BinaryOp.Add, other); return this; }
    /// <summary>this -= other in place.</summary>
    public Tensor Sub_(Tensor other) { BinaryInPlace(BinaryOp.Sub, other); return this; }
    /// <summary>this *= other in place.</summary>
    public Tensor Mul_(Tensor other) { BinaryInPlace(BinaryOp.Mul, other); return this; }
    /// <summary>this /= other in place.</summary>
    public Tensor Div_(Tensor other) { BinaryInPlace(BinaryOp.Div, other); return this; }
    /// <summary>this += s in place.</summary>
    public Tensor Add_(double s) => Add_(ScalarLike(s));
    /// <summary>this *= s in place.</summary>
    public Tensor Mul_(double s) => Mul_(ScalarLike(s));

    /// <summary>A rank-0 tensor of this dtype and device.</summary>
    internal Tensor ScalarLike(double v) => Scalar(v, DType, Device);

    /// <summary>a + b</summary>
    public static Tensor operator +(Tensor a, Tensor b) => a.Add(b);
    /// <summary>a - b</summary>
    public static Tensor operator -(Tensor a, Tensor b) => a.Sub(b);
    /// <summary>a * b</summary>
    public static Tensor operator *(Tensor a, Tensor b) => a.Mul(b);
    /// <summary>a / b</summary>
    public static Tensor operator /(Tensor a, Tensor b) => a.Div(b);
    /// <summary>-a</summary>
    public static Tensor operator -(Tensor a) => a.DType.IsFloating() ? a.Neg() : a.ScalarLike(0) - a;
    /// <summary>a + s</summary>
    public static Tensor operator +(Tensor a, double s) => a.Add(a.ScalarLike(s));
    /// <summary>s + a</summary>
    public static Tensor operator +(double s, Tensor a) => a.ScalarLike(s).Add(a);
    /// <summary>a - s</summary>
    public static Tensor operator -(Tensor a, double s) => a.Sub(a.ScalarLike(s));
    /// <summary>s - a</summary>
    public static Tensor operator -(double s, Tensor a) => a.ScalarLike(s).Sub(a);
    /// <summary>a * s</summary>
    public static Tensor operator *(Tensor a, double s) => a.Mul(a.ScalarLike(s));
    /// <summary>s * a</summary>
    public static Tensor operator *(double s, Tensor a) => a.ScalarLike(s).Mul(a);
    /// <summary>a / s</summary>
    public static Tensor operator /(Tensor a, double s) => a.Div(a.ScalarLike(s));
    /// <summary>s / a</summary>
    public static Tensor operator /(double s, Tensor a) => a.ScalarLike(s).Div(a);

    // ---------------------------------------------------------------- comparisons and selection

    /// <summary>Elementwise comparison with broadcasting; the result is Bool and carries no gradient.</summary>
    public static Tensor Compare(CompareOp op, Tensor a, Tensor b)
    {
        string name = op.ToString().ToLowerInvariant();
        a.Storage.ThrowIfDisposed(name); b.Storage.ThrowIfDisposed(name);
        Check.SameDType(a, b, name, "other");
        Check.SameDevice(a, b, name, "other");
        var shape = Shape.Broadcast(a.Shape, b.Shape, name);
        var y = Empty(shape, DType.Bool, a.Device);
        a.Backend.Compare(op, a.BroadcastTo(shape), b.BroadcastTo(shape), y);
        return y;
    }

    /// <summary>a == b</summary>
    public Tensor Eq(Tensor other) => Compare(CompareOp.Eq, this, other);
    /// <summary>a != b</summary>
    public Tensor Ne(Tensor other) => Compare(CompareOp.Ne, this, other);
    /// <summary>a &lt; b</summary>
    public static Tensor operator <(Tensor a, Tensor b) => Compare(CompareOp.Lt, a, b);
    /// <summary>a &gt; b</summary>
    public static Tensor operator >(Tensor a, Tensor b) => Compare(CompareOp.Gt, a, b);
    /// <summary>a &lt;= b</summary>
    public static Tensor operator <=(Tensor a, Tensor b) => Compare(CompareOp.Le, a, b);
    /// <summary>a &gt;= b</summary>
    public static Tensor operator >=(Tensor a, Tensor b) => Compare(CompareOp.Ge, a, b);
    /// <summary>a &lt; s</summary>
    public static Tensor operator <(Tensor a, double s) => Compare(CompareOp.Lt, a, a.ScalarLike(s));
    /// <summary>a &gt; s</summary>
    public static Tensor operator >(Tensor a, double s) => Compare(CompareOp.Gt, a, a.ScalarLike(s));
    /// <summary>a &lt;= s</summary>
    public static Tensor operator <=(Tensor a, double s) => Compare(CompareOp.Le, a, a.ScalarLike(s));
    /// <summary>a &gt;= s</summary>
    public static Tensor operator >=(Tensor a, double s) => Compare(CompareOp.Ge, a, a.ScalarLike(s));
    /// <summary>Logical and of Bool tensors.</summary>
    public static Tensor operator &(Tensor a, Tensor b) => Where(a, b, Zeros(new Shape(), DType.Bool, a.Device));
    /// <summary>Logical or of Bool tensors.</summary>
    public static Tensor operator |(Tensor a, Tensor b) => Where(a, Ones(new Shape(), DType.Bool, a.Device), b);
    /// <summary>Logical not of a Bool tensor.</summary>
    public static Tensor operator !(Tensor a) => Where(a, Zeros(new Shape(), DType.Bool, a.Device), Ones(new Shape(), DType.Bool, a.Device));

    /// <summary>True where the value is NaN.</summary>
    public Tensor IsNan() => Ne(this);

    /// <summary>cond ? a : b elementwise, all three broadcast together; gradients flow to the chosen side.</summary>
    /// <exception cref="ArgumentException">cond is not Bool, or a and b differ in dtype.</exception>
    public static Tensor Where(Tensor cond, Tensor a, Tensor b)
    {
        if (cond.DType != DType.Bool) throw new ArgumentException($"where: cond must be Bool, not {cond.DType}", nameof(cond));
        Check.SameDType(a, b, "where", nameof(b));
        Check.SameDevice(a, b, "where", nameof(b));
        Check.SameDevice(a, cond, "where", nameof(cond));
        var shape = Shape.Broadcast(Shape.Broadcast(cond.Shape, a.Shape, "where"), b.Shape, "where");
        var y = Empty(shape, a.DType, a.Device);
        a.Backend.Where(cond.BroadcastTo(shape), a.BroadcastTo(shape), b.BroadcastTo(shape), y);
        if (!a.DType.IsFloating()) return y;
        return Record(y, "where", [a, b], g =>
        {
            var z = g.ZerosLike();
            return [Where(cond, g, z).SumTo(a.Shape), Where(cond, z, g).SumTo(b.Shape)];
        });
    }

    /// <summary>A copy with <paramref name="value"/> where <paramref name="mask"/> (Bool, broadcast) is true.</summary>
    public Tensor MaskedFill(Tensor mask, double value) => Where(mask, ScalarLike(value), this);
}
