using Kiln.NN;
using Xunit;

namespace Kiln.Tests.NN;

/// <summary>Gradient checks for modules: inputs through GradCheck.Run, parameters by central differences in place.</summary>
public static class NNCheck
{
    public static Tensor R(Shape s, ulong seed, double lo = -1, double hi = 1) => Tensor.Rand(s, new Generator(seed), lo, hi, DType.Float64);

    /// <summary>GradCheck of the input gradient of y = f(x) (float64).</summary>
    public static void Input(Func<Tensor, Tensor> f, Tensor x, string what)
    {
        var r = GradCheck.Run(xs => f(xs[0]), [x]);
        Assert.True(r.Passed, $"{what}: {r}");
    }

    /// <summary>
    /// Checks d sum(w * f()) / d p for every parameter element of <paramref name="module"/> (float64) against
    /// central differences with the same tolerances as GradCheck.Run.
    /// </summary>
    public static void Parameters(Module module, Func<Tensor> f, string what, double eps = 1e-6, double atol = 1e-5, double rtol = 1e-4)
    {
        module.ZeroGrad();
        var y0 = f();
        var w = Tensor.Rand(y0.Shape, new Generator(99), 0.5, 1.5, DType.Float64);
        (y0 * w).Sum().Backward();
        int checkedCount = 0;
        foreach (var (name, p) in module.NamedParameters())
        {
            Assert.True(p.Grad is not null, $"{what}: parameter {name} got no gradient");
            var analytic = p.Grad!.ToArray<double>();
            var data = ((CpuStorage)p.Value.Storage).As<double>();
            int off = p.Value.Layout.Offset;
            for (int e = 0; e < p.Numel; e++)
            {
                double orig = data[off + e];
                double Eval(double v)
                {
                    data[off + e] = v;
                    using (Autograd.NoGrad()) return (f() * w).Sum().Item();
                }
                double numeric = (Eval(orig + eps) - Eval(orig - eps)) / (2 * eps);
                data[off + e] = orig;
                double err = Math.Abs(analytic[e] - numeric);
                Assert.True(err <= atol + rtol * Math.Abs(numeric), $"{what}: d/d {name}[{e}] analytic {analytic[e]:G10}, numeric {numeric:G10}");
                checkedCount++;
            }
        }
        Assert.True(checkedCount > 0, $"{what}: module has no parameters to check");
        module.ZeroGrad();
    }
}
