using System.Diagnostics;
using Kiln.Methods.Smoothing;

namespace Kiln.Cli;

/// <summary>The stump-smoothing tour step: the paper's breast_cancer row (independent MLE stumps, l2 sigma = 4) trained and certified exactly, beside the paper's numbers.</summary>
public static class SmoothTour
{
    public static bool Run(Device device)
    {
        var setup = Reproduction.Table2[0];
        var sw = Stopwatch.StartNew();
        var r = Reproduction.Run(setup, device);
        Console.Error.WriteLine($"  {setup.Dataset}, {r.Stumps} MLE stumps, {setup.Noise}: natural {r.Natural:F1}% (paper {setup.PaperNatural:F1}%), certified at r = {setup.Radius} {r.Certified:F1}% (paper {setup.PaperCertified:F1}%), ACR {r.Acr:F3}");
        Console.Error.WriteLine($"  trained in {r.TrainSeconds:F2} s, certified {r.Result.Labels.Count} test points exactly in {r.CertifySeconds * 1e3:F1} ms; 'kiln smooth reproduce' runs all of Tables 2 and 3");
        return Math.Abs(r.Natural - setup.PaperNatural!.Value) <= 1 && Math.Abs(r.Certified - setup.PaperCertified) <= 2;
    }
}
