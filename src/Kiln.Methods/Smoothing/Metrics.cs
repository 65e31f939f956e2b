namespace Kiln.Methods.Smoothing;

/// <summary>Certificates of a labelled test set and the usual summaries: natural accuracy, certified accuracy CA(r), ACR.</summary>
public sealed class CertificationResult
{
    /// <summary>Pairs <paramref name="certificates"/> with <paramref name="labels"/> (same length).</summary>
    /// <exception cref="ArgumentException">The lengths differ.</exception>
    public CertificationResult(IReadOnlyList<Certificate> certificates, IReadOnlyList<int> labels)
    {
        ArgumentNullException.ThrowIfNull(certificates);
        ArgumentNullException.ThrowIfNull(labels);
        if (certificates.Count != labels.Count) throw new ArgumentException($"{certificates.Count} certificates for {labels.Count} labels", nameof(labels));
        Certificates = certificates; Labels = labels;
    }

    /// <summary>The certificates, one per test point.</summary>
    public IReadOnlyList<Certificate> Certificates { get; }
    /// <summary>The true labels.</summary>
    public IReadOnlyList<int> Labels { get; }

    bool Correct(int i) => Certificates[i].Class == Labels[i];

    /// <summary>The fraction of points whose smoothed prediction is correct.</summary>
    public double NaturalAccuracy => Fraction(i => Correct(i));

    /// <summary>CA(r): the fraction of points predicted correctly with certified radius R &gt;= r.</summary>
    public double CertifiedAccuracy(double radius) => Fraction(i => Correct(i) && Certificates[i].Radius >= radius);

    /// <summary>The mean over classes of the certified accuracy within each class (classes present in the labels).</summary>
    public double BalancedCertifiedAccuracy(double radius)
    {
        var classes = Labels.Distinct().OrderBy(c => c).ToArray();
        if (classes.Length == 0) return 0;
        return classes.Average(c =>
        {
            var idx = Enumerable.Range(0, Labels.Count).Where(i => Labels[i] == c).ToArray();
            return idx.Count(i => Correct(i) && Certificates[i].Radius >= radius) / (double)idx.Length;
        });
    }

    /// <summary>ACR: the mean over all points of the certified radius, counting 0 for wrong predictions.</summary>
    public double AverageCertifiedRadius => Labels.Count == 0 ? 0 : Enumerable.Range(0, Labels.Count).Sum(i => Correct(i) ? Certificates[i].Radius : 0) / Labels.Count;

    double Fraction(Func<int, bool> f) => Labels.Count == 0 ? 0 : Enumerable.Range(0, Labels.Count).Count(f) / (double)Labels.Count;
}
