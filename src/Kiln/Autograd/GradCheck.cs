namespace Kiln;

/// <summary>Compares analytic gradients with central finite differences in float64.</summary>
public static class GradCheck
{
    /// <summary>The worst disagreement found by <see cref="Run"/>.</summary>
    public readonly record struct Result(bool Passed, double MaxAbsError, double MaxRelError, int Input, int Element, double Analytic, double Numeric)
    {
        /// <inheritdoc/>
        public override string ToString() => Passed ? $"gradcheck passed (max abs error {MaxAbsError:G3})"
            : $"gradcheck failed at input {Input}, element {Element}: analytic {Analytic:G10}, numeric {Numeric:G10} (abs error {MaxAbsError:G3})";
    }

    /// <summary>
    /// Checks d sum(w * f(inputs)) / d inputs for a fixed random weighting w (so every output element matters) against
    /// central differences (f(x + eps) - f(x - eps)) / 2 eps, element by element. Inputs are converted to Float64.
    /// An element passes when |analytic - numeric| &lt;= atol + rtol |numeric|. With <paramref name="higherOrder"/> the
    /// finite differences run with recording on and inputs that require grad, so f may itself call
    /// <see cref="Autograd.Grad(Tensor[], Tensor[], Tensor[], bool, bool?)"/> (gradient penalties, double backprop).
    /// </summary>
    public static Result Run(Func<Tensor[], Tensor> f, Tensor[] inputs, double eps = 1e-6, double atol = 1e-5, double rtol = 1e-4, ulong seed = 1234,
        bool higherOrder = false)
    {
        var xs = inputs.Select(x => x.Detach().To(DType.Float64).Clone().Detach().RequiresGrad_()).ToArray();
        var y0 = f(xs);
        var w = Tensor.Rand(y0.Shape, new Generator(seed), 0.5, 1.5, DType.Float64, y0.Device);
        var analytic = Autograd.Grad([(y0 * w).Sum()], xs);
        var best = new Result(true, 0, 0, -1, -1, 0, 0);
        for (int k = 0; k < xs.Length; k++)
        {
            var a = analytic[k].ToArray<double>();
            var baseVals = xs[k].ToArray<double>();
            for (int e = 0; e < baseVals.Length; e++)
            {
                double Eval(double v)
                {
                    var vals = (double[])baseVals.Clone(); vals[e] = v;
                    var args = xs.Select((x, j) => j == k ? Tensor.FromArray(vals, x.Shape).To(x.Device) : x.Detach()).ToArray();
                    if (higherOrder) return (f([.. args.Select(a => a.RequiresGrad_())]) * w).Sum().Item();
                    using (Autograd.NoGrad()) return (f(args) * w).Sum().Item();
                }
                double numeric = (Eval(baseVals[e] + eps) - Eval(baseVals[e] - eps)) / (2 * eps);
                double err = Math.Abs(a[e] - numeric);
                double rel = err / Math.Max(Math.Abs(numeric), 1e-12);
                bool ok = err <= atol + rtol * Math.Abs(numeric) && !double.IsNaN(a[e]);
                if (!ok && best.Passed || (ok == best.Passed && err > best.MaxAbsError))
                    best = new Result(ok && best.Passed, err, rel, k, e, a[e], numeric);
            }
        }
        return best;
    }
}
