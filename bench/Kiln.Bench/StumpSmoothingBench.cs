using BenchmarkDotNet.Attributes;
using Kiln;
using Kiln.Methods.Smoothing;

/// <summary>
/// Exact certification of the paper's 10-stump breast_cancer model (independent MLE stumps, l2 sigma = 4) on the 137
/// test rows repeated to 100,000 inputs: region probabilities (the core's NormalCdf), the stump-sum DP kernel and the
/// radii (NormalIcdf). Divide the mean by 100,000 for microseconds per sample; the reference code takes about 53.
/// </summary>
public class StumpSmoothingBench
{
    const int Rows = 100_000;
    StumpEnsemble _model = null!;
    Tensor _x = null!;
    readonly Noise _noise = Noise.Gaussian(4);

    [GlobalSetup]
    public void Setup()
    {
        var d = SmoothingData.BreastCancer();
        _model = MleStumps.Train(d.XTrain, d.YTrain, _noise);
        var test = d.XTest.ToArray<double>();
        int f = d.XTest.Shape[1], n = d.XTest.Shape[0];
        var big = new double[Rows * f];
        for (int i = 0; i < Rows; i++) Array.Copy(test, i % n * f, big, i * f, f);
        _x = Tensor.FromArray(big, new Shape(Rows, f));
    }

    [Benchmark]
    public Certificate[] Certify100k() => ExactSmoothing.Certify(_model, _x, _noise);
}
