using Kiln.Kernels;
using Kiln.Ops;

namespace Kiln;

public sealed partial class Tensor
{
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
        var rule = ElementwiseOps.Binary(op).Gradient;
        return Record(y, name, [a, b], g => rule(a, b, y, g));
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
