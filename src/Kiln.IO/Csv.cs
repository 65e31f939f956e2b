using System.Globalization;
using System.IO.Compression;

namespace Kiln.IO;

/// <summary>How <see cref="Csv.Load(string, CsvOptions?)"/> reads a file.</summary>
public sealed record CsvOptions
{
    /// <summary>The field separator (default ',').</summary>
    public char Separator { get; init; } = ',';
    /// <summary>Whether the first line read names the columns; null (default) detects it: the line is a header when any of its fields is not a number.</summary>
    public bool? HasHeader { get; init; }
    /// <summary>Lines to skip before the header or data (for files that start with a free-form line).</summary>
    public int SkipLines { get; init; }
    /// <summary>The label column by header name (needs a header); null for none.</summary>
    public string? LabelColumn { get; init; }
    /// <summary>The label column by index (negative counts from the end: -1 is the last); null for none.</summary>
    public int? LabelIndex { get; init; }
    /// <summary>Drop rows with a missing value ('?' or an empty field) instead of failing (the count is in <see cref="CsvData.DroppedRows"/>).</summary>
    public bool DropMissing { get; init; }
    /// <summary>The labels' dtype: Int64 (default; values must be whole numbers), Float32 or Float64.</summary>
    public DType LabelDType { get; init; } = DType.Int64;
    /// <summary>Bounds on a ".gz" file's decompressed size (default <see cref="ReadLimits.Default"/>).</summary>
    public ReadLimits? Limits { get; init; }
    /// <summary>Reject NaN and infinities (which parse as numbers otherwise) as not finite, with their line and column.</summary>
    public bool FiniteOnly { get; init; }
}

/// <summary>A numeric table as read by <see cref="Csv.ReadTable"/>, every value in float64.</summary>
/// <param name="Names">The columns' header names, or "c0", "c1", ... (0-based, as in error messages) without a header.</param>
/// <param name="HasHeader">Whether the file had a header line.</param>
/// <param name="Rows">The data rows, each with one value per column.</param>
/// <param name="Lines">The 1-based line number of each row in the file.</param>
/// <param name="DroppedRows">Rows dropped for missing values (only with <see cref="CsvOptions.DropMissing"/>).</param>
public sealed record CsvTable(IReadOnlyList<string> Names, bool HasHeader, IReadOnlyList<double[]> Rows, IReadOnlyList<int> Lines, int DroppedRows);

/// <summary>A numeric table read by <see cref="Csv"/>.</summary>
/// <param name="Features">Float32 [rows, feature columns].</param>
/// <param name="Labels">The label column [rows] in <see cref="CsvOptions.LabelDType"/>, or null when none was asked for.</param>
/// <param name="FeatureNames">The feature columns' header names ("c0", "c1", ... by index without a header).</param>
/// <param name="LabelName">The label column's name, or null.</param>
/// <param name="DroppedRows">Rows dropped for missing values (only with <see cref="CsvOptions.DropMissing"/>).</param>
public sealed record CsvData(Tensor Features, Tensor? Labels, IReadOnlyList<string> FeatureNames, string? LabelName, int DroppedRows);

/// <summary>
/// A small reader for numeric CSV: every field a number (invariant culture), an optional header (detected by default),
/// an optional label column chosen by name or index, and missing values ('?' or empty) reported with their line and
/// column, or dropped on request. Files ending in ".gz" are decompressed.
/// </summary>
public static class Csv
{
    /// <summary>Reads the CSV file at <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">A field is not a number, a value is missing, rows differ in width, a label is not whole for Int64,
    /// or a ".gz" file is corrupt or expands past <see cref="ReadLimits.MaxDecompressedBytes"/>.</exception>
    /// <exception cref="ArgumentException">The label column is unknown, or given both by name and index, or by name without a header.</exception>
    public static CsvData Load(string path, CsvOptions? options = null)
    {
        using var fs = File.OpenRead(path);
        var limits = options?.Limits ?? ReadLimits.Default;
        limits.Validate();
        using Stream s = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)
            ? new BoundedReadStream(new GZipStream(fs, CompressionMode.Decompress), limits.MaxDecompressedBytes, path) : fs;
        using var reader = new StreamReader(s);
        return Load(reader, options, path);
    }

    /// <summary>Reads CSV text from <paramref name="reader"/>; <paramref name="source"/> names it in error messages.</summary>
    /// <exception cref="InvalidDataException">A field is not a number, a value is missing, rows differ in width, or a label is not whole for Int64.</exception>
    /// <exception cref="ArgumentException">The label column is unknown, or given both by name and index, or by name without a header.</exception>
    public static CsvData Load(TextReader reader, CsvOptions? options = null, string source = "csv")
    {
        var o = options ?? new CsvOptions();
        if (o.LabelColumn is not null && o.LabelIndex is not null)
            throw new ArgumentException("csv: give the label column by name or by index, not both", nameof(options));
        if (o.LabelDType is not (DType.Int64 or DType.Float32 or DType.Float64))
            throw new ArgumentException($"csv: labels can be Int64, Float32 or Float64, not {o.LabelDType}", nameof(options));
        var table = ReadTable(reader, o, source);
        var rows = table.Rows;
        var names = table.HasHeader ? table.Names.ToArray() : null;
        int width = table.Names.Count;
        if (width == 0 && (o.LabelIndex is not null || o.LabelColumn is not null))
            throw new InvalidDataException($"{source}: holds no header and no rows, so it has no label column");
        int label = LabelColumn(o, names, width, source);
        var featureCols = Enumerable.Range(0, width).Where(c => c != label).ToArray();
        var x = new float[rows.Count * featureCols.Length];
        for (int r = 0; r < rows.Count; r++)
            for (int j = 0; j < featureCols.Length; j++) x[r * featureCols.Length + j] = (float)rows[r][featureCols[j]];
        var features = Tensor.FromArray(x, new Shape(rows.Count, featureCols.Length));
        Tensor? labels = null;
        if (label >= 0)
        {
            var y = new double[rows.Count];
            for (int r = 0; r < rows.Count; r++)
            {
                y[r] = rows[r][label];
                if (o.LabelDType == DType.Int64 && (y[r] != Math.Floor(y[r]) || Math.Abs(y[r]) > 1e15))
                    throw new InvalidDataException($"{source}: line {table.Lines[r]}: label {y[r]} is not a whole number; read labels as Float32 or Float64");
            }
            labels = o.LabelDType == DType.Int64 ? Tensor.FromArray(y.Select(v => (long)v).ToArray()) : Tensor.FromArray(y).To(o.LabelDType);
        }
        return new CsvData(features, labels, featureCols.Select(c => table.Names[c]).ToArray(), label >= 0 ? table.Names[label] : null, table.DroppedRows);
    }

    /// <summary>
    /// Reads CSV text from <paramref name="reader"/> into float64 rows (the reader behind <see cref="Load(TextReader, CsvOptions?, string)"/>,
    /// for callers that need full precision or their own column handling); the label options are ignored.
    /// <paramref name="source"/> names the text in error messages, which give the 1-based line and the 0-based column.
    /// </summary>
    /// <exception cref="InvalidDataException">A field is not a number (or not finite with <see cref="CsvOptions.FiniteOnly"/>), a value is missing, a header name is empty, or rows differ in width.</exception>
    public static CsvTable ReadTable(TextReader reader, CsvOptions? options = null, string source = "csv")
    {
        var o = options ?? new CsvOptions();
        for (int i = 0; i < o.SkipLines; i++) reader.ReadLine();
        int lineNo = o.SkipLines;
        string[]? names = null;
        var rows = new List<double[]>();
        var rowLines = new List<int>();
        int width = -1, dropped = 0;
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            lineNo++;
            if (line.Trim().Length == 0) continue;
            var fields = line.Split(o.Separator).Select(f => f.Trim().Trim('"').Trim()).ToArray();
            if (width < 0)
            {
                width = fields.Length;
                bool header = o.HasHeader ?? fields.Any(f => !IsMissing(f) && !double.TryParse(f, NumberStyles.Float, CultureInfo.InvariantCulture, out _));
                if (header)
                {
                    if (Array.IndexOf(fields, "") is var empty and >= 0) throw new InvalidDataException($"{source}: line {lineNo}, column {empty}: the header has an empty column name");
                    names = fields;
                    continue;
                }
            }
            if (fields.Length != width)
                throw new InvalidDataException($"{source}: line {lineNo} has {fields.Length} fields but {(names is null ? "the first row" : "the header")} has {width}");
            var row = new double[width];
            bool missing = false;
            for (int c = 0; c < width; c++)
            {
                if (IsMissing(fields[c]))
                {
                    if (o.DropMissing) { missing = true; break; }
                    throw new InvalidDataException($"{source}: line {lineNo}, column {ColumnName(names, c)}: missing value '{fields[c]}'; set DropMissing to drop such rows");
                }
                bool parsed = double.TryParse(fields[c], NumberStyles.Float, CultureInfo.InvariantCulture, out row[c]);
                if (!parsed || o.FiniteOnly && !double.IsFinite(row[c]))
                    throw new InvalidDataException($"{source}: line {lineNo}, column {ColumnName(names, c)}: '{Clip(fields[c])}' is not a {(o.FiniteOnly ? "finite " : "")}number");
            }
            if (missing) { dropped++; continue; }
            rows.Add(row);
            rowLines.Add(lineNo);
        }
        if (width < 0) width = names?.Length ?? 0;
        return new CsvTable(names ?? Enumerable.Range(0, width).Select(c => $"c{c}").ToArray(), names is not null, rows, rowLines, dropped);
    }

    // A field is quoted in a one-line error; a runaway field (a file that is not CSV) must not flood it.
    static string Clip(string f) => f.Length > 20 ? f[..20] + "..." : f;

    static bool IsMissing(string f) => f.Length == 0 || f == "?";

    static string ColumnName(string[]? names, int c) => names is null ? c.ToString(CultureInfo.InvariantCulture) : $"'{names[c]}' ({c})";

    static int LabelColumn(CsvOptions o, string[]? names, int width, string source)
    {
        if (o.LabelColumn is { } name)
        {
            if (names is null) throw new ArgumentException($"csv: label column '{name}' is named but {source} has no header; give LabelIndex instead", nameof(o));
            int i = Array.IndexOf(names, name);
            if (i < 0) throw new ArgumentException($"csv: {source} has no column '{name}' (columns: {string.Join(", ", names)})", nameof(o));
            return i;
        }
        if (o.LabelIndex is { } idx)
        {
            int i = idx < 0 ? idx + width : idx;
            if (i < 0 || i >= width) throw new ArgumentOutOfRangeException(nameof(o), idx, $"csv: label index {idx} is outside the {width} columns of {source}");
            return i;
        }
        return -1;
    }
}
