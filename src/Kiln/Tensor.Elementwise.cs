using Kiln.Kernels;
using Kiln.Ops;

namespace Kiln;

public partial class Tensor
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

    /// <summary>
    /// Broadcasts both operands and applies a binary primitive in their promoted dtype (<see cref="TypePromotion"/>);
    /// division of integers is true division in <see cref="TypePromotion.DefaultFloat"/>. Gradients flow back to each
    /// operand in its own dtype.
    /// </summary>
    public static Tensor Binary(BinaryOp op, Tensor a, Tensor b) => Binary(op, a, b, TypePromotion.ResultType(TypePromotion.Of(a), TypePromotion.Of(b)));

    // The ops' names in messages and the autodiff record, made once.
    static readonly string[] BinaryNames = Enum.GetValues<BinaryOp>().Select(o => o.ToString().ToLowerInvariant()).ToArray();

    static Tensor Binary(BinaryOp op, Tensor a, Tensor b, DType dtype)
    {
        string name = BinaryNames[(int)op];
        a.Storage.ThrowIfDisposed(name); b.Storage.ThrowIfDisposed(name);
        Check.SameDevice(a, b, name, "other");
        if (op == BinaryOp.Div && !dtype.IsFloating()) dtype = TypePromotion.DefaultFloat;
        (a, b) = (a.To(dtype), b.To(dtype));
        var shape = Shape.Broadcast(a.Shape, b.Shape, name);
        var y = Empty(shape, dtype, a.Device);
        a.Backend.Binary(op, a.BroadcastTo(shape), b.BroadcastTo(shape), y);
        return dtype.IsFloating() && Tracks(a, b) ? RecordBinary(op, name, a, b, y) : y;
    }

    static Tensor RecordBinary(BinaryOp op, string name, Tensor a, Tensor b, Tensor y)
    {
        var rule = ElementwiseOps.Binary(op).Gradient;
        return Record(y, name, [a, b], g => rule(a, b, y, g));
    }

    /// <summary>op(a, s) or op(s, a) for a .NET scalar s taking part in promotion as <paramref name="kind"/> (Float64 for a double, Int64, Bool).</summary>
    static Tensor Binary(BinaryOp op, Tensor a, double s, DType kind, bool scalarFirst)
    {
        var dtype = TypePromotion.ResultType(TypePromotion.Of(a), (kind, TypePromotion.Role.Scalar));
        var t = Scalar(s, op == BinaryOp.Div && !dtype.IsFloating() ? TypePromotion.DefaultFloat : dtype, a.Device);
        return scalarFirst ? Binary(op, t, a, dtype) : Binary(op, a, t, dtype);
    }

    void BinaryInPlace(BinaryOp op, Tensor b)
    {
        string name = BinaryNames[(int)op] + "_";
        CheckInPlace(name);
        b.Storage.ThrowIfDisposed(name);
        Check.SameDevice(this, b, name, "other");
        var shape = Shape.Broadcast(Shape, b.Shape, name);
        if (shape != Shape) throw new ShapeMismatchException(name, "other", Shape, b.Shape, "an in-place result must keep the tensor's shape");
        var dtype = TypePromotion.ResultType(TypePromotion.Of(this), TypePromotion.Of(b));
        if (op == BinaryOp.Div && !dtype.IsFloating()) dtype = TypePromotion.DefaultFloat;
        InPlaceResult(name, dtype);
        if (dtype == DType && b.DType == DType) { Backend.Binary(op, this, ReadableBeforeWrite(b).BroadcastTo(shape), this); return; }
        using (Autograd.NoGrad()) Backend.Copy(Binary(op, this, b, dtype), this);
    }

    void ScalarInPlace(BinaryOp op, double s, DType kind)
    {
        string name = op.ToString().ToLowerInvariant() + "_";
        var dtype = TypePromotion.ResultType(TypePromotion.Of(this), (kind, TypePromotion.Role.Scalar));
        InPlaceResult(name, dtype);
        BinaryInPlace(op, Scalar(s, dtype, Device));
    }

    void InPlaceResult(string name, DType dtype)
    {
        if (!TypePromotion.CanCast(dtype, DType))
            throw new ArgumentException($"{name}: the result type {dtype} cannot be written into a {DType} tensor in place (it would drop to a lower category); use the out-of-place op", "other");
    }

    /// <summary>The dtype <c>Binary(op, a, b)</c> computes in (<see cref="TypePromotion.ResultType"/>): <c>torch.result_type(a, b)</c>.</summary>
    public static DType ResultType(Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        return TypePromotion.ResultType(TypePromotion.Of(a), TypePromotion.Of(b));
    }

    /// <summary>The dtype of <paramref name="a"/> combined with a .NET double: Float32 for integer and Bool tensors, else a's dtype.</summary>
    public static DType ResultType(Tensor a, double scalar) => TypePromotion.ResultType(TypePromotion.Of(a), (DType.Float64, TypePromotion.Role.Scalar));

    /// <summary>The dtype of <paramref name="a"/> combined with a .NET integer: Int64 for Bool tensors, else a's dtype.</summary>
    public static DType ResultType(Tensor a, long scalar) => TypePromotion.ResultType(TypePromotion.Of(a), (DType.Int64, TypePromotion.Role.Scalar));

    /// <summary>a + b with broadcasting.</summary>
    public Tensor Add(Tensor other) => Binary(BinaryOp.Add, this, other);
    /// <summary>a - b with broadcasting.</summary>
    public Tensor Sub(Tensor other) => Binary(BinaryOp.Sub, this, other);
    /// <summary>a * b with broadcasting.</summary>
    public Tensor Mul(Tensor other) => Binary(BinaryOp.Mul, this, other);
    /// <summary>a / b with broadcasting.</summary>
    public Tensor Div(Tensor other) => Binary(BinaryOp.Div, this, other);
    /// <summary>
    /// a / b rounded toward zero (<see cref="DivRounding.Trunc"/>, C's integer division) or toward -infinity
    /// (<see cref="DivRounding.Floor"/>, Python's //), in the promoted dtype: integers stay integers, as
    /// <c>torch.div(a, b, rounding_mode=...)</c>. No gradient (the result is piecewise constant).
    /// </summary>
    /// <exception cref="DivideByZeroException">An integer divisor is 0.</exception>
    public Tensor Div(Tensor other, DivRounding rounding)
    {
        ArgumentNullException.ThrowIfNull(other);
        var dtype = ResultType(this, other);
        if (dtype.IsFloating())
        {
            var q = Binary(BinaryOp.Div, this, other, dtype);
            return (rounding == DivRounding.Floor ? q.Floor() : q.Trunc()).Detach();
        }
        var (a, b) = (To(dtype), other.To(dtype));
        var y = Empty(Shape.Broadcast(a.Shape, b.Shape, "div"), dtype, Device);
        Backend.Binary(BinaryOp.Div, a.BroadcastTo(y.Shape), b.BroadcastTo(y.Shape), y);   // the integer kernel truncates
        if (rounding == DivRounding.Trunc) return y;
        // Floor: one less where the remainder is nonzero and its sign differs from the divisor's.
        var r = a - y * b;
        return Where(r.Ne(r.ZerosLike()) & ((r < 0.0).Ne(b < 0.0)), y - 1L, y);
    }

    /// <summary>a // b (<see cref="Div(Tensor, DivRounding)"/> with <see cref="DivRounding.Floor"/>).</summary>
    public Tensor FloorDivide(Tensor other) => Div(other, DivRounding.Floor);

    /// <summary>a - floor(a / b) b: Python's % (the result has the divisor's sign), as <c>torch.remainder</c>.</summary>
    public Tensor Remainder(Tensor other) => this - FloorDivide(other) * other;

    /// <summary>a - trunc(a / b) b: C's fmod (the result has the dividend's sign), as <c>torch.fmod</c>.</summary>
    public Tensor Fmod(Tensor other) => this - Div(other, DivRounding.Trunc) * other;

    /// <summary>a ^ b with broadcasting.</summary>
    public static Tensor Pow(Tensor a, Tensor b) => Binary(BinaryOp.Pow, a, b);
    /// <summary>x ^ p.</summary>
    public Tensor Pow(double p) => PowScalar(this, p);
    /// <summary>Elementwise maximum with broadcasting.</summary>
    public static Tensor Maximum(Tensor a, Tensor b) => Binary(BinaryOp.Max, a, b);
    /// <summary>Elementwise minimum with broadcasting.</summary>
    public static Tensor Minimum(Tensor a, Tensor b) => Binary(BinaryOp.Min, a, b);
    /// <summary>atan2(a, b) with broadcasting.</summary>
    public static Tensor Atan2(Tensor a, Tensor b) => Binary(BinaryOp.Atan2, a, b);

    /// <summary>this += other in place; other may be a view of this tensor's storage (it is read as it was before the op).</summary>
    public Tensor Add_(Tensor other) { BinaryInPlace(BinaryOp.Add, other); return this; }
    /// <summary>this -= other in place; other may be a view of this tensor's storage (it is read as it was before the op).</summary>
    public Tensor Sub_(Tensor other) { BinaryInPlace(BinaryOp.Sub, other); return this; }
    /// <summary>this *= other in place; other may be a view of this tensor's storage (it is read as it was before the op).</summary>
    public Tensor Mul_(Tensor other) { BinaryInPlace(BinaryOp.Mul, other); return this; }
    /// <summary>this /= other in place; other may be a view of this tensor's storage (it is read as it was before the op).</summary>
    public Tensor Div_(Tensor other) { BinaryInPlace(BinaryOp.Div, other); return this; }
    /// <summary>this += s in place.</summary>
    /// <exception cref="ArgumentException">This tensor is integer or Bool (the result would be floating).</exception>
    public Tensor Add_(double s) { ScalarInPlace(BinaryOp.Add, s, DType.Float64); return this; }
    /// <summary>this *= s in place.</summary>
    /// <exception cref="ArgumentException">This tensor is integer or Bool (the result would be floating).</exception>
    public Tensor Mul_(double s) { ScalarInPlace(BinaryOp.Mul, s, DType.Float64); return this; }
    /// <summary>this += s in place.</summary>
    public Tensor Add_(long s) { ScalarInPlace(BinaryOp.Add, s, DType.Int64); return this; }
    /// <summary>this *= s in place.</summary>
    public Tensor Mul_(long s) { ScalarInPlace(BinaryOp.Mul, s, DType.Int64); return this; }
    /// <summary>this -= s in place.</summary>
    /// <exception cref="ArgumentException">This tensor is integer or Bool (the result would be floating).</exception>
    public Tensor Sub_(double s) { ScalarInPlace(BinaryOp.Sub, s, DType.Float64); return this; }
    /// <summary>this -= s in place.</summary>
    public Tensor Sub_(long s) { ScalarInPlace(BinaryOp.Sub, s, DType.Int64); return this; }
    /// <summary>this /= s in place.</summary>
    /// <exception cref="ArgumentException">This tensor is integer or Bool (the result would be floating).</exception>
    public Tensor Div_(double s) { ScalarInPlace(BinaryOp.Div, s, DType.Float64); return this; }

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
    public static Tensor operator -(Tensor a) => a.DType.IsFloating() || a.DType.IsInteger() ? a.Neg() : 0L - a;
    /// <summary>a + s (promoted: an integer tensor + a double is Float32).</summary>
    public static Tensor operator +(Tensor a, double s) => Binary(BinaryOp.Add, a, s, DType.Float64, scalarFirst: false);
    /// <summary>s + a</summary>
    public static Tensor operator +(double s, Tensor a) => Binary(BinaryOp.Add, a, s, DType.Float64, scalarFirst: true);
    /// <summary>a + s (promoted: an integer tensor + a double is Float32).</summary>
    public static Tensor operator +(Tensor a, long s) => Binary(BinaryOp.Add, a, s, DType.Int64, scalarFirst: false);
    /// <summary>s + a</summary>
    public static Tensor operator +(long s, Tensor a) => Binary(BinaryOp.Add, a, s, DType.Int64, scalarFirst: true);
    /// <summary>a - s (promoted: an integer tensor - a double is Float32).</summary>
    public static Tensor operator -(Tensor a, double s) => Binary(BinaryOp.Sub, a, s, DType.Float64, scalarFirst: false);
    /// <summary>s - a</summary>
    public static Tensor operator -(double s, Tensor a) => Binary(BinaryOp.Sub, a, s, DType.Float64, scalarFirst: true);
    /// <summary>a - s (promoted: an integer tensor - a double is Float32).</summary>
    public static Tensor operator -(Tensor a, long s) => Binary(BinaryOp.Sub, a, s, DType.Int64, scalarFirst: false);
    /// <summary>s - a</summary>
    public static Tensor operator -(long s, Tensor a) => Binary(BinaryOp.Sub, a, s, DType.Int64, scalarFirst: true);
    /// <summary>a * s (promoted: an integer tensor * a double is Float32).</summary>
    public static Tensor operator *(Tensor a, double s) => Binary(BinaryOp.Mul, a, s, DType.Float64, scalarFirst: false);
    /// <summary>s * a</summary>
    public static Tensor operator *(double s, Tensor a) => Binary(BinaryOp.Mul, a, s, DType.Float64, scalarFirst: true);
    /// <summary>a * s (promoted: an integer tensor * a double is Float32).</summary>
    public static Tensor operator *(Tensor a, long s) => Binary(BinaryOp.Mul, a, s, DType.Int64, scalarFirst: false);
    /// <summary>s * a</summary>
    public static Tensor operator *(long s, Tensor a) => Binary(BinaryOp.Mul, a, s, DType.Int64, scalarFirst: true);
    /// <summary>a / s (promoted: an integer tensor / a double is Float32).</summary>
    public static Tensor operator /(Tensor a, double s) => Binary(BinaryOp.Div, a, s, DType.Float64, scalarFirst: false);
    /// <summary>s / a</summary>
    public static Tensor operator /(double s, Tensor a) => Binary(BinaryOp.Div, a, s, DType.Float64, scalarFirst: true);
    /// <summary>a / s (promoted: an integer tensor / a double is Float32).</summary>
    public static Tensor operator /(Tensor a, long s) => Binary(BinaryOp.Div, a, s, DType.Int64, scalarFirst: false);
    /// <summary>s / a</summary>
    public static Tensor operator /(long s, Tensor a) => Binary(BinaryOp.Div, a, s, DType.Int64, scalarFirst: true);

    // ---------------------------------------------------------------- bitwise

    /// <summary>
    /// Broadcasts both operands and applies a bitwise primitive in their promoted dtype, which must be Int32, Int64 or
    /// Bool (Bool: and, or, xor only); <see cref="BitwiseOp.Not"/> takes only <paramref name="a"/> (use
    /// <see cref="BitwiseNot"/>). No gradient.
    /// </summary>
    /// <exception cref="NotSupportedException">The promoted dtype is floating, or Bool for a shift.</exception>
    public static Tensor Bitwise(BitwiseOp op, Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        string name = ElementwiseOps.BitwiseOps[(int)op].Name;
        if (op == BitwiseOp.Not) throw new ArgumentException($"{name} is unary: use BitwiseNot()", nameof(op));
        a.Storage.ThrowIfDisposed(name); b.Storage.ThrowIfDisposed(name);
        Check.SameDevice(a, b, name, "other");
        var dtype = ResultType(a, b);
        CheckBitwise(op, dtype, name, a.DType, b.DType);
        (a, b) = (a.To(dtype), b.To(dtype));
        var shape = Shape.Broadcast(a.Shape, b.Shape, name);
        var y = Empty(shape, dtype, a.Device);
        a.Backend.Bitwise(op, a.BroadcastTo(shape), b.BroadcastTo(shape), y);
        return y;
    }

    static void CheckBitwise(BitwiseOp op, DType dtype, string name, DType a, DType b)
    {
        bool shift = op is BitwiseOp.LeftShift or BitwiseOp.RightShift;
        if (!dtype.IsInteger() && (shift || dtype != DType.Bool))
            throw new NotSupportedException($"{name}: operands {a} and {b} promote to {dtype}; this op is defined on Int32 and Int64{(shift ? "" : " and Bool")}");
    }

    /// <summary>Bitwise and (logical and of Bool tensors) with broadcasting, as <c>torch.bitwise_and</c>.</summary>
    /// <exception cref="NotSupportedException">An operand is floating.</exception>
    public Tensor BitwiseAnd(Tensor other) => Bitwise(BitwiseOp.And, this, other);
    /// <summary>Bitwise or (logical or of Bool tensors) with broadcasting, as <c>torch.bitwise_or</c>.</summary>
    /// <exception cref="NotSupportedException">An operand is floating.</exception>
    public Tensor BitwiseOr(Tensor other) => Bitwise(BitwiseOp.Or, this, other);
    /// <summary>Bitwise xor (logical xor of Bool tensors) with broadcasting, as <c>torch.bitwise_xor</c>.</summary>
    /// <exception cref="NotSupportedException">An operand is floating.</exception>
    public Tensor BitwiseXor(Tensor other) => Bitwise(BitwiseOp.Xor, this, other);
    /// <summary>
    /// a &lt;&lt; b with broadcasting, as <c>torch.bitwise_left_shift</c>: bits shifted past the width are lost, and a count
    /// below 0 or at least the width gives 0.
    /// </summary>
    /// <exception cref="NotSupportedException">An operand is floating or both are Bool.</exception>
    public Tensor BitwiseLeftShift(Tensor other) => Bitwise(BitwiseOp.LeftShift, this, other);
    /// <summary>
    /// a &gt;&gt; b with broadcasting, arithmetic (the sign fills in), as <c>torch.bitwise_right_shift</c>: a count below 0
    /// or past the width gives 0 or -1 by the sign.
    /// </summary>
    /// <exception cref="NotSupportedException">An operand is floating or both are Bool.</exception>
    public Tensor BitwiseRightShift(Tensor other) => Bitwise(BitwiseOp.RightShift, this, other);

    /// <summary>Ones' complement of an integer tensor, logical not of a Bool one, as <c>torch.bitwise_not</c>.</summary>
    /// <exception cref="NotSupportedException">The tensor is floating.</exception>
    public Tensor BitwiseNot()
    {
        Storage.ThrowIfDisposed("bitwise.not");
        CheckBitwise(BitwiseOp.Not, DType, "bitwise.not", DType, DType);
        var y = Empty(Shape, DType, Device);
        Backend.Bitwise(BitwiseOp.Not, this, this, y);
        return y;
    }

    // ---------------------------------------------------------------- comparisons and selection

    /// <summary>Elementwise comparison with broadcasting, in the operands' promoted dtype; the result is Bool and carries no gradient.</summary>
    public static Tensor Compare(CompareOp op, Tensor a, Tensor b)
    {
        string name = op.ToString().ToLowerInvariant();
        a.Storage.ThrowIfDisposed(name); b.Storage.ThrowIfDisposed(name);
        Check.SameDevice(a, b, name, "other");
        var dtype = ResultType(a, b);
        (a, b) = (a.To(dtype), b.To(dtype));
        var shape = Shape.Broadcast(a.Shape, b.Shape, name);
        var y = Empty(shape, DType.Bool, a.Device);
        a.Backend.Compare(op, a.BroadcastTo(shape), b.BroadcastTo(shape), y);
        return y;
    }

    /// <summary>a == b</summary>
    public Tensor Eq(Tensor other) => Compare(CompareOp.Eq, this, other);
    /// <summary>a != b</summary>
    public Tensor Ne(Tensor other) => Compare(CompareOp.Ne, this, other);
    /// <summary>a &lt; b (the operator &lt; as a method).</summary>
    public Tensor Lt(Tensor other) => Compare(CompareOp.Lt, this, other);
    /// <summary>a &lt;= b</summary>
    public Tensor Le(Tensor other) => Compare(CompareOp.Le, this, other);
    /// <summary>a &gt; b</summary>
    public Tensor Gt(Tensor other) => Compare(CompareOp.Gt, this, other);
    /// <summary>a &gt;= b</summary>
    public Tensor Ge(Tensor other) => Compare(CompareOp.Ge, this, other);
    /// <summary>a &lt; b</summary>
    public static Tensor operator <(Tensor a, Tensor b) => Compare(CompareOp.Lt, a, b);
    /// <summary>a &gt; b</summary>
    public static Tensor operator >(Tensor a, Tensor b) => Compare(CompareOp.Gt, a, b);
    /// <summary>a &lt;= b</summary>
    public static Tensor operator <=(Tensor a, Tensor b) => Compare(CompareOp.Le, a, b);
    /// <summary>a &gt;= b</summary>
    public static Tensor operator >=(Tensor a, Tensor b) => Compare(CompareOp.Ge, a, b);
    /// <summary>a &lt; s</summary>
    public static Tensor operator <(Tensor a, double s) => Compare(CompareOp.Lt, a, Scalar(s, ResultType(a, s), a.Device));
    /// <summary>a &gt; s</summary>
    public static Tensor operator >(Tensor a, double s) => Compare(CompareOp.Gt, a, Scalar(s, ResultType(a, s), a.Device));
    /// <summary>a &lt;= s</summary>
    public static Tensor operator <=(Tensor a, double s) => Compare(CompareOp.Le, a, Scalar(s, ResultType(a, s), a.Device));
    /// <summary>a &gt;= s</summary>
    public static Tensor operator >=(Tensor a, double s) => Compare(CompareOp.Ge, a, Scalar(s, ResultType(a, s), a.Device));
    /// <summary>a &amp; b (<see cref="BitwiseAnd"/>): logical and of Bool tensors, bitwise and of integers.</summary>
    public static Tensor operator &(Tensor a, Tensor b) => Bitwise(BitwiseOp.And, a, b);
    /// <summary>a | b (<see cref="BitwiseOr"/>): logical or of Bool tensors, bitwise or of integers.</summary>
    public static Tensor operator |(Tensor a, Tensor b) => Bitwise(BitwiseOp.Or, a, b);
    /// <summary>a ^ b (<see cref="BitwiseXor"/>): logical xor of Bool tensors, bitwise xor of integers.</summary>
    public static Tensor operator ^(Tensor a, Tensor b) => Bitwise(BitwiseOp.Xor, a, b);
    /// <summary>~a (<see cref="BitwiseNot"/>): logical not of a Bool tensor, ones' complement of integers.</summary>
    public static Tensor operator ~(Tensor a) => a.BitwiseNot();
    /// <summary>a &lt;&lt; b (<see cref="BitwiseLeftShift"/>).</summary>
    public static Tensor operator <<(Tensor a, Tensor b) => a.BitwiseLeftShift(b);
    /// <summary>a &gt;&gt; b, arithmetic (<see cref="BitwiseRightShift"/>).</summary>
    public static Tensor operator >>(Tensor a, Tensor b) => a.BitwiseRightShift(b);
    /// <summary>a &lt;&lt; s for an integer tensor, in its dtype.</summary>
    public static Tensor operator <<(Tensor a, int s) => a.BitwiseLeftShift(Scalar(s, a.DType, a.Device));
    /// <summary>a &gt;&gt; s for an integer tensor, in its dtype (arithmetic).</summary>
    public static Tensor operator >>(Tensor a, int s) => a.BitwiseRightShift(Scalar(s, a.DType, a.Device));
    /// <summary>Logical not of a Bool tensor.</summary>
    public static Tensor operator !(Tensor a) => Where(a, Zeros(new Shape(), DType.Bool, a.Device), Ones(new Shape(), DType.Bool, a.Device));

    /// <summary>True where the value is NaN (never for integer and Bool tensors), as <c>torch.isnan</c>.</summary>
    public Tensor IsNan() => Classify(x => x.Ne(x));

    /// <summary>True where the value is +-infinity (never for integer and Bool tensors), as <c>torch.isinf</c>.</summary>
    public Tensor IsInf() => Classify(x => Compare(CompareOp.Eq, x.Abs(), x.ScalarLike(double.PositiveInfinity)));

    /// <summary>True where the value is +infinity (never for integer and Bool tensors), as <c>torch.isposinf</c>.</summary>
    public Tensor IsPosInf() => Classify(x => Compare(CompareOp.Eq, x, x.ScalarLike(double.PositiveInfinity)));

    /// <summary>True where the value is -infinity (never for integer and Bool tensors), as <c>torch.isneginf</c>.</summary>
    public Tensor IsNegInf() => Classify(x => Compare(CompareOp.Eq, x, x.ScalarLike(double.NegativeInfinity)));

    /// <summary>True where the value is neither NaN nor infinite (always for integer and Bool tensors), as <c>torch.isfinite</c>.</summary>
    public Tensor IsFinite() => Classify(x => Compare(CompareOp.Lt, x.Abs(), x.ScalarLike(double.PositiveInfinity)), integers: true);

    // A Bool mask of a floating tensor's values; integer and Bool tensors hold only finite numbers. The test runs on a
    // detached view (a mask has no gradient).
    Tensor Classify(Func<Tensor, Tensor> test, bool integers = false)
    {
        Storage.ThrowIfDisposed("classify");
        if (!DType.IsFloating()) return Full(Shape, integers ? 1 : 0, DType.Bool, Device);
        return test(Detach());
    }

    /// <summary>
    /// A copy with NaN replaced by <paramref name="nan"/>, +infinity by <paramref name="posinf"/> and -infinity by
    /// <paramref name="neginf"/> (by default the dtype's largest and lowest finite values), each rounded to the dtype, as
    /// <c>torch.nan_to_num</c>; integer and Bool tensors are copied unchanged. The gradient passes where the value is finite.
    /// </summary>
    public Tensor NanToNum(double nan = 0, double? posinf = null, double? neginf = null)
    {
        Storage.ThrowIfDisposed("nan_to_num");
        if (!DType.IsFloating()) return Clone();
        double max = DType switch
        {
            DType.Float32 => float.MaxValue,
            DType.Float16 => (double)System.Half.MaxValue,
            DType.BFloat16 => 3.3895313892515355e38,
            _ => double.MaxValue,
        };
        return Where(IsNan(), ScalarLike(nan), Where(IsPosInf(), ScalarLike(posinf ?? max), Where(IsNegInf(), ScalarLike(neginf ?? -max), this)));
    }

    /// <summary>cond ? a : b elementwise, all three broadcast together, a and b in their promoted dtype; gradients flow to the chosen side.</summary>
    /// <exception cref="ArgumentException">cond is not Bool.</exception>
    public static Tensor Where(Tensor cond, Tensor a, Tensor b)
    {
        if (cond.DType != DType.Bool) throw new ArgumentException($"where: cond must be Bool, not {cond.DType}", nameof(cond));
        var dtype = ResultType(a, b);
        (a, b) = (a.To(dtype), b.To(dtype));
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

    /// <summary>Pow with a .NET exponent, promoted as a scalar.</summary>
    static Tensor PowScalar(Tensor x, double p) => Binary(BinaryOp.Pow, x, p, DType.Float64, scalarFirst: false);
}

/// <summary>How <see cref="Tensor.Div(Tensor, DivRounding)"/> rounds its quotient.</summary>
public enum DivRounding
{
    /// <summary>Toward zero (C's integer division).</summary>
    Trunc,
    /// <summary>Toward -infinity (Python's //).</summary>
    Floor,
}
