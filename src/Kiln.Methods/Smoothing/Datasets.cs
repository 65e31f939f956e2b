using System.Globalization;
using System.IO.Compression;
using Kiln.IO;

namespace Kiln.Methods.Smoothing;

/// <summary>How numerical columns are scaled, always with statistics of the training split.</summary>
public enum Scaling
{
    /// <summary>(x - min) / (max - min).</summary>
    MinMax,
    /// <summary>(x - mean) / std (population standard deviation).</summary>
    ZScore,
    /// <summary>Unchanged.</summary>
    None,
}

/// <summary>
/// A binary classification set split into training and test data. <see cref="XTrain"/> and <see cref="XTest"/> hold
/// all columns (Float64 [n, d]); categorical columns hold integer codes and are listed in <see cref="Categorical"/>.
/// </summary>
public sealed record SmoothingDataset(string Name, string[] Columns, Tensor XTrain, int[] YTrain, Tensor XTest, int[] YTest, int[] Categorical)
{
    /// <summary>The numerical columns (all but <see cref="Categorical"/>), in order.</summary>
    public int[] Numerical => Enumerable.Range(0, Columns.Length).Except(Categorical).ToArray();

    /// <summary>The numerical columns of the training inputs.</summary>
    public Tensor NumericalTrain => Select(XTrain, Numerical);
    /// <summary>The numerical columns of the test inputs.</summary>
    public Tensor NumericalTest => Select(XTest, Numerical);

    /// <summary>Category codes of the test rows, one array per row in the order of <see cref="Categorical"/>.</summary>
    public int[][] CategoryCodesTest => Codes(XTest);
    /// <summary>Category codes of the training columns, one array per categorical column.</summary>
    public int[][] CategoryColumnsTrain => Categorical.Select(c => XTrain.Narrow(1, c, 1).Reshape(-1).ToArray<double>().Select(v => (int)v).ToArray()).ToArray();

    int[][] Codes(Tensor x)
    {
        var host = x.ToArray<double>();
        int d = Columns.Length;
        return Enumerable.Range(0, x.Shape[0]).Select(i => Categorical.Select(c => (int)host[i * d + c]).ToArray()).ToArray();
    }

    /// <summary>The data set with its inputs on <paramref name="device"/>: training and certification on it then run there.</summary>
    public SmoothingDataset To(Device device) => this with { XTrain = XTrain.To(device), XTest = XTest.To(device) };

    static Tensor Select(Tensor x, int[] cols) => x.IndexSelect(1, Tensor.FromArray(cols.Select(c => (long)c).ToArray()).To(x.Device));
}

/// <summary>The paper's data sets (embedded, with provenance in Smoothing/Data/PROVENANCE.md) and a CSV loader for any binary-labelled table.</summary>
public static class SmoothingData
{
    static TextReader Resource(string name)
    {
        var s = typeof(SmoothingData).Assembly.GetManifestResourceStream("Kiln.Methods.Smoothing.Data." + name)
            ?? throw new InvalidOperationException($"embedded data set {name} is missing from Kiln.Methods");
        return new StreamReader(name.EndsWith(".gz", StringComparison.Ordinal) ? new GZipStream(s, CompressionMode.Decompress) : s);
    }

    /// <summary>The names accepted by <see cref="Load"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["breast_cancer", "diabetes", "adult", "credit"];

    /// <summary>One of the embedded data sets by name (<see cref="Names"/>).</summary>
    /// <exception cref="ArgumentException">Unknown name.</exception>
    public static SmoothingDataset Load(string name) => name switch
    {
        "breast_cancer" => BreastCancer(),
        "diabetes" => Diabetes(),
        "adult" => Joint("adult", "adult_train.csv.gz", "adult_test.csv.gz"),
        "credit" => Joint("credit", "credit_train.csv", "credit_test.csv"),
        _ => throw new ArgumentException($"unknown data set '{name}'; known: {string.Join(", ", Names)}", nameof(name)),
    };

    /// <summary>Wisconsin breast cancer as in the paper: rows with '?' dropped, id kept, 4 -&gt; 1, first 80% train, min-max scaled.</summary>
    public static SmoothingDataset BreastCancer()
    {
        using var r = Resource("breast-cancer-wisconsin.data");
        var table = Parse(r, "breast-cancer-wisconsin.data", header: false, dropMissing: true);
        var cols = Enumerable.Range(0, 10).Select(i => i == 0 ? "id" : $"f{i}").Append("class").ToArray();
        return Split("breast_cancer", table with { Names = cols }, 10, 0.8, Scaling.MinMax, []);
    }

    /// <summary>Pima Indians diabetes as in the paper: first 80% train, min-max scaled.</summary>
    public static SmoothingDataset Diabetes()
    {
        using var r = Resource("diabetes.csv");
        var table = Parse(r, "diabetes.csv", header: true);
        return Split("diabetes", table, table.Names.Length - 1, 0.8, Scaling.MinMax, []);
    }

    static SmoothingDataset Joint(string name, string train, string test)
    {
        using var a = Resource(train);
        using var b = Resource(test);
        var tr = Parse(a, train, header: true);
        var te = Parse(b, test, header: true);
        int label = tr.Names.Length - 1;
        var cat = Enumerable.Range(0, label).Where(i => tr.Names[i].StartsWith('c')).ToArray();
        return Build(name, tr, te, label, Scaling.ZScore, cat);
    }

    /// <summary>
    /// Loads a CSV (header row optional, detected when the first row is not all numbers) with a binary label column
    /// given by name or 0-based index; the two label values map to 0 and 1 in ascending order. Without
    /// <paramref name="testPath"/> the first <paramref name="trainFraction"/> of rows train and the rest test.
    /// Categorical columns (names or indices) default to the columns named cN when every feature is named cN or nN.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is malformed: ragged rows, non-numbers, a label with other than two values.</exception>
    /// <exception cref="ArgumentException">The label or a categorical column is not in the file.</exception>
    public static SmoothingDataset FromCsv(string trainPath, string? testPath, string labelColumn, Scaling scaling, IReadOnlyList<string>? categorical = null, double trainFraction = 0.8)
    {
        Table Read(string path) { using var r = new StreamReader(path); return Parse(r, path, header: null); }
        var tr = Read(trainPath);
        int label = Column(tr.Names, labelColumn, "label-column");
        int[] cat;
        if (categorical is { Count: > 0 }) cat = categorical.Select(c => Column(tr.Names, c, "categorical")).Where(c => c != label).Distinct().Order().ToArray();
        else
        {
            var feats = Enumerable.Range(0, tr.Names.Length).Where(i => i != label).ToArray();
            bool named = tr.HasHeader && feats.All(i => tr.Names[i].Length > 1 && (tr.Names[i][0] is 'c' or 'n') && tr.Names[i][1..].All(char.IsDigit));
            cat = named ? feats.Where(i => tr.Names[i][0] == 'c').ToArray() : [];
        }
        string name = Path.GetFileNameWithoutExtension(trainPath);
        if (testPath is null) return Split(name, tr, label, trainFraction, scaling, cat);
        var te = Read(testPath);
        if (te.Names.Length != tr.Names.Length) throw new InvalidDataException($"{testPath}: {te.Names.Length} columns, but the training file has {tr.Names.Length}");
        return Build(name, tr, te, label, scaling, cat);
    }

    static int Column(string[] names, string spec, string what)
    {
        int idx = Array.IndexOf(names, spec);
        if (idx >= 0) return idx;
        if (int.TryParse(spec, NumberStyles.Integer, CultureInfo.InvariantCulture, out idx) && idx >= 0 && idx < names.Length) return idx;
        throw new ArgumentException($"--{what} '{spec}' names no column (columns: {string.Join(", ", names)}; or a 0-based index below {names.Length})", what);
    }

    sealed record Table(string[] Names, bool HasHeader, IReadOnlyList<double[]> Rows);

    // Kiln.IO's CSV reader (line and 0-based column in messages), strict: finite numbers, rows with '?' dropped on request.
    static Table Parse(TextReader reader, string source, bool? header, bool dropMissing = false)
    {
        var t = Csv.ReadTable(reader, new CsvOptions { HasHeader = header, DropMissing = dropMissing, FiniteOnly = true }, source);
        if (t.Rows.Count == 0) throw new InvalidDataException($"{source}: no data rows");
        if (t.Names.Count < 2) throw new InvalidDataException($"{source}: a data set needs at least one feature and a label column");
        return new Table(t.Names.ToArray(), t.HasHeader, t.Rows);
    }

    static SmoothingDataset Split(string name, Table t, int label, double fraction, Scaling scaling, int[] cat)
    {
        if (!(fraction > 0 && fraction < 1)) throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "the training fraction must be in (0, 1)");
        int nTrain = (int)(fraction * t.Rows.Count);
        return Build(name, t with { Rows = t.Rows.Take(nTrain).ToList() }, t with { Rows = t.Rows.Skip(nTrain).ToList() }, label, scaling, cat);
    }

    static SmoothingDataset Build(string name, Table train, Table test, int label, Scaling scaling, int[] catAll)
    {
        var labelValues = train.Rows.Concat(test.Rows).Select(r => r[label]).Distinct().Order().ToArray();
        if (labelValues.Length != 2) throw new InvalidDataException($"{name}: the label column '{train.Names[label]}' has {labelValues.Length} distinct values ({string.Join(", ", labelValues.Take(5))}); binary labels are required");
        var features = Enumerable.Range(0, train.Names.Length).Where(i => i != label).ToArray();
        var cat = catAll.Select(c => Array.IndexOf(features, c)).Where(c => c >= 0).ToArray();
        int d = features.Length;
        double[] Matrix(Table t) { var m = new double[t.Rows.Count * d]; for (int i = 0; i < t.Rows.Count; i++) for (int j = 0; j < d; j++) m[i * d + j] = t.Rows[i][features[j]]; return m; }
        var xtr = Matrix(train); var xte = Matrix(test);
        foreach (int c in cat)
            foreach (var m in new[] { xtr, xte })
                for (int i = c; i < m.Length; i += d)
                    if (m[i] != Math.Floor(m[i]) || m[i] < 0) throw new InvalidDataException($"{name}: categorical column '{train.Names[features[c]]}' holds {m[i]}; category codes must be non-negative integers");
        if (scaling != Scaling.None && train.Rows.Count > 0)
            for (int j = 0; j < d; j++)
            {
                if (cat.Contains(j)) continue;
                double a, b;
                var col = Enumerable.Range(0, train.Rows.Count).Select(i => xtr[i * d + j]).ToArray();
                if (scaling == Scaling.MinMax) { a = col.Min(); b = col.Max() - a; }
                else { a = col.Average(); b = Math.Sqrt(col.Select(v => (v - a) * (v - a)).Average()); }
                if (b == 0) b = 1;
                foreach (var m in new[] { xtr, xte }) for (int i = j; i < m.Length; i += d) m[i] = (m[i] - a) / b;
            }
        int[] Labels(Table t) => t.Rows.Select(r => r[label] == labelValues[1] ? 1 : 0).ToArray();
        return new SmoothingDataset(name, features.Select(f => train.Names[f]).ToArray(),
            Tensor.FromArray(xtr, new Shape(train.Rows.Count, d)), Labels(train),
            Tensor.FromArray(xte, new Shape(test.Rows.Count, d)), Labels(test), cat);
    }
}
