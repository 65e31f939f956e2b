using System.IO.Compression;

namespace Kiln.IO;

/// <summary>
/// Small public data sets embedded in Kiln.IO, so examples and tests run with no network (provenance and licences in
/// Datasets/README.md), and a fixed train/test split.
/// </summary>
public static class Datasets
{
    /// <summary>
    /// UCI Optical Recognition of Handwritten Digits (the scikit-learn copy, CC BY 4.0): 1797 images of 8x8 grey levels
    /// 0..16 as Float32 features [1797, 64] (row-major pixels) and the digit 0..9 as Int64 labels [1797].
    /// </summary>
    public static (Tensor Features, Tensor Labels) Digits()
    {
        using var s = Resource("digits.csv.gz");
        using var gz = new GZipStream(s, CompressionMode.Decompress);
        using var r = new StreamReader(gz);
        var d = Csv.Load(r, new CsvOptions { HasHeader = false, LabelIndex = -1 }, "digits.csv.gz");
        return (d.Features, d.Labels!);
    }

    /// <summary>
    /// Wisconsin Diagnostic Breast Cancer (the scikit-learn copy, CC BY 4.0): 569 tumours with 30 real-valued features
    /// as Float32 [569, 30] and Int64 labels [569], 0 = malignant and 1 = benign.
    /// </summary>
    public static (Tensor Features, Tensor Labels) BreastCancer()
    {
        using var s = Resource("breast_cancer.csv");
        using var r = new StreamReader(s);
        // The first line holds counts and class names ("569,30,malignant,benign"), not column names.
        var d = Csv.Load(r, new CsvOptions { SkipLines = 1, HasHeader = false, LabelIndex = -1 }, "breast_cancer.csv");
        return (d.Features, d.Labels!);
    }

    /// <summary>
    /// Splits rows into train and test sets by a random permutation that depends only on the row count,
    /// <paramref name="testFraction"/> and <paramref name="seed"/> (Philox, <see cref="Tensor.RandPerm"/>), so the split is
    /// the same on every run and machine: the first ceil(n * testFraction) rows of the permutation are the test set, in
    /// permutation order, and the rest the training set.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="testFraction"/> is outside [0, 1].</exception>
    /// <exception cref="ShapeMismatchException">The tensors differ in their number of rows.</exception>
    public static ((Tensor Features, Tensor Labels) Train, (Tensor Features, Tensor Labels) Test) TrainTestSplit(
        Tensor features, Tensor labels, double testFraction = 0.25, ulong seed = 0)
    {
        ArgumentNullException.ThrowIfNull(features); ArgumentNullException.ThrowIfNull(labels);
        if (!(testFraction >= 0 && testFraction <= 1)) throw new ArgumentOutOfRangeException(nameof(testFraction), testFraction, "train_test_split: the test fraction must be in [0, 1]");
        if (features.Rank == 0 || labels.Rank == 0 || features.Shape[0] != labels.Shape[0])
            throw new ShapeMismatchException("train_test_split", nameof(labels), $"features {features.Shape} and labels {labels.Shape} must have the same number of rows");
        int n = features.Shape[0];
        int nTest = (int)Math.Ceiling(n * testFraction);
        var perm = Tensor.RandPerm(n, new Generator(seed)).To(features.Device);
        var test = perm.Narrow(0, 0, nTest);
        var train = perm.Narrow(0, nTest, n - nTest);
        return ((features.IndexSelect(0, train), labels.IndexSelect(0, train.To(labels.Device))),
                (features.IndexSelect(0, test), labels.IndexSelect(0, test.To(labels.Device))));
    }

    static Stream Resource(string file) =>
        typeof(Datasets).Assembly.GetManifestResourceStream("Kiln.IO.Datasets." + file)
        ?? throw new InvalidOperationException($"Kiln.IO: the embedded data set '{file}' is missing from the assembly");
}
