namespace Kiln.Kernels;

/// <summary>Elementwise unary primitives. Every backend implements each one; <see cref="Reference.Unary"/> defines it.</summary>
public enum UnaryOp
{
    /// <summary>-x</summary>
    Neg,
    /// <summary>|x|</summary>
    Abs,
    /// <summary>e^x</summary>
    Exp,
    /// <summary>ln x</summary>
    Log,
    /// <summary>ln(1 + x)</summary>
    Log1p,
    /// <summary>e^x - 1</summary>
    Expm1,
    /// <summary>sqrt x</summary>
    Sqrt,
    /// <summary>1 / sqrt x</summary>
    Rsqrt,
    /// <summary>1 / (1 + e^-x)</summary>
    Sigmoid,
    /// <summary>tanh x</summary>
    Tanh,
    /// <summary>max(x, 0)</summary>
    Relu,
    /// <summary>x Phi(x), the exact GELU.</summary>
    GeluErf,
    /// <summary>0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))), the tanh approximation of GELU.</summary>
    GeluTanh,
    /// <summary>x sigmoid(x)</summary>
    Silu,
    /// <summary>ln(1 + e^x), computed without overflow.</summary>
    Softplus,
    /// <summary>The error function.</summary>
    Erf,
    /// <summary>The inverse error function on (-1, 1).</summary>
    Erfinv,
    /// <summary>Phi(x), the standard normal CDF.</summary>
    NormalCdf,
    /// <summary>Phi^-1(p), the standard normal quantile.</summary>
    NormalIcdf,
    /// <summary>-1, 0 or 1 (NaN stays NaN).</summary>
    Sign,
    /// <summary>1 / x</summary>
    Reciprocal,
    /// <summary>x^2</summary>
    Square,
    /// <summary>sin x</summary>
    Sin,
    /// <summary>cos x</summary>
    Cos,
    /// <summary>Heaviside step: 1 for x &gt; 0, else 0 (the derivative of relu).</summary>
    Step,
}

/// <summary>Elementwise binary primitives with NumPy broadcasting.</summary>
public enum BinaryOp
{
    /// <summary>a + b</summary>
    Add,
    /// <summary>a - b</summary>
    Sub,
    /// <summary>a * b</summary>
    Mul,
    /// <summary>a / b</summary>
    Div,
    /// <summary>a ^ b</summary>
    Pow,
    /// <summary>max(a, b); NaN if either is NaN.</summary>
    Max,
    /// <summary>min(a, b); NaN if either is NaN.</summary>
    Min,
    /// <summary>atan2(a, b)</summary>
    Atan2,
}

/// <summary>Elementwise comparisons; the result is boolean.</summary>
public enum CompareOp
{
    /// <summary>a == b</summary>
    Eq,
    /// <summary>a != b</summary>
    Ne,
    /// <summary>a &lt; b</summary>
    Lt,
    /// <summary>a &lt;= b</summary>
    Le,
    /// <summary>a &gt; b</summary>
    Gt,
    /// <summary>a &gt;= b</summary>
    Ge,
}

/// <summary>Reductions over a contiguous run of values.</summary>
public enum ReduceOp
{
    /// <summary>Sum of the values.</summary>
    Sum,
    /// <summary>Product of the values.</summary>
    Prod,
    /// <summary>Maximum (NaN propagates).</summary>
    Max,
    /// <summary>Minimum (NaN propagates).</summary>
    Min,
}
