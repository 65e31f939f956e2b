using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Kiln.IO;

/// <summary>
/// Reads and writes NumPy .npy files (format versions 1.0, 2.0 and 3.0): the magic "\x93NUMPY", a version, a header
/// length, a Python-literal header {'descr': ..., 'fortran_order': ..., 'shape': (...)}, then the raw data. Supported
/// dtypes: '&lt;f4' (Float32), '&lt;f8' (Float64), '&lt;i4' (Int32), '&lt;i8' (Int64), '|b1' (Bool), '&lt;f2' (Float16); big-endian
/// '&gt;' variants are byte-swapped on load; Fortran-order arrays are transposed into row-major tensors. Files are
/// written as version 1.0 (2.0 when the header needs it), little-endian, C order. Malformed input throws
/// <see cref="InvalidDataException"/> naming what is wrong.
/// </summary>
public static class Npy
{
    static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];
    const int MaxHeaderBytes = 1 << 20;

    /// <summary>Loads the array in the .npy file at <paramref name="path"/> as a CPU tensor.</summary>
    /// <exception cref="InvalidDataException">The file is malformed or holds an unsupported dtype.</exception>
    public static Tensor Load(string path)
    {
        using var fs = File.OpenRead(path);
        return Load(fs);
    }

    /// <summary>Reads one .npy array from <paramref name="stream"/> (from its current position).</summary>
    /// <exception cref="InvalidDataException">The data is malformed, truncated, or holds an unsupported dtype.</exception>
    public static Tensor Load(Stream stream) => Read(stream, stream.CanSeek ? stream.Length - stream.Position : null);

    internal static Tensor Read(Stream s, long? available)
    {
        var pre = new byte[8];
        ReadExact(s, pre, "the magic and version");
        if (!pre.AsSpan(0, 6).SequenceEqual(Magic)) throw new InvalidDataException("npy: missing the magic \"\\x93NUMPY\" at the start");
        int major = pre[6], minor = pre[7];
        if (major is < 1 or > 3 || minor != 0) throw new InvalidDataException($"npy: format version {major}.{minor} is not 1.0, 2.0 or 3.0");
        var lenBytes = new byte[major == 1 ? 2 : 4];
        ReadExact(s, lenBytes, "the header length");
        long headerLen = major == 1 ? BinaryPrimitives.ReadUInt16LittleEndian(lenBytes) : BinaryPrimitives.ReadUInt32LittleEndian(lenBytes);
        if (headerLen > MaxHeaderBytes) throw new InvalidDataException($"npy: header length {headerLen} exceeds the {MaxHeaderBytes}-byte limit");
        long prefix = 8 + lenBytes.Length + headerLen;
        if (available is long av && prefix > av) throw new InvalidDataException($"npy: header length {headerLen} runs past the end of the {av}-byte input");
        var header = new byte[headerLen];
        ReadExact(s, header, "the header");
        string text;
        try { text = (major == 3 ? new UTF8Encoding(false, true) : Encoding.Latin1).GetString(header); }
        catch (DecoderFallbackException e) { throw new InvalidDataException("npy: the version 3.0 header is not valid UTF-8", e); }
        var (descr, fortran, dims) = ParseHeader(text);
        var (dtype, bigEndian) = ParseDescr(descr);
        long numel = 1;
        foreach (long d in dims)
        {
            if (d > int.MaxValue) throw new InvalidDataException($"npy: extent {d} in shape ({string.Join(", ", dims)}) is more than a Kiln dimension holds");
            numel = numel == 0 || d == 0 ? 0 : numel > long.MaxValue / 8 / d ? long.MaxValue : numel * d;
        }
        long bytes = numel == long.MaxValue ? long.MaxValue : numel * dtype.Size();
        if (available is long av2 && bytes > av2 - prefix)
            throw new InvalidDataException($"npy: shape ({string.Join(", ", dims)}) of {descr} needs {(bytes == long.MaxValue ? "more than 2^63" : bytes.ToString())} data bytes but only {av2 - prefix} follow the header");
        if (numel > int.MaxValue) throw new InvalidDataException($"npy: shape ({string.Join(", ", dims)}) has {numel} elements, more than a Kiln tensor holds");
        if (!SafetensorsHeader.ShapeFits(dims))
            throw new InvalidDataException($"npy: shape ({string.Join(", ", dims)}) has leading extents that multiply past {int.MaxValue}, more than a Kiln shape holds");
        var data = ReadBounded(s, bytes);
        var idims = dims.Select(d => (int)d).ToArray();
        if (!fortran || idims.Length < 2)
            return RawData.ToTensor(RawData.Over(data), 0, dtype, new Shape(idims), bigEndian);
        // Fortran order is the row-major layout of the reversed shape: read it so and transpose back.
        var rev = idims.Reverse().ToArray();
        var t = RawData.ToTensor(RawData.Over(data), 0, dtype, new Shape(rev), bigEndian);
        return t.Permute(Enumerable.Range(0, rev.Length).Reverse().ToArray()).Contiguous();
    }

    static void ReadExact(Stream s, byte[] buf, string what)
    {
        int got = 0;
        while (got < buf.Length)
        {
            int r = s.Read(buf, got, buf.Length - got);
            if (r == 0) throw new InvalidDataException($"npy: the input ends after {got} of the {buf.Length} bytes of {what}");
            got += r;
        }
    }

    // Reads `bytes` bytes in chunks, so a lying header on an unbounded stream fails at end of input instead of
    // allocating what it declares up front.
    static byte[] ReadBounded(Stream s, long bytes)
    {
        const int chunk = 1 << 20;
        if (bytes <= chunk) { var b = new byte[bytes]; ReadExact(s, b, "the data"); return b; }
        using var ms = new MemoryStream();
        var buf = new byte[chunk];
        long left = bytes;
        while (left > 0)
        {
            int want = (int)Math.Min(chunk, left);
            int r = s.Read(buf, 0, want);
            if (r == 0) throw new InvalidDataException($"npy: the input ends after {bytes - left} of the {bytes} data bytes");
            ms.Write(buf, 0, r);
            left -= r;
        }
        return ms.ToArray();
    }

    static (DType, bool BigEndian) ParseDescr(string descr)
    {
        if (descr.Length >= 3)
        {
            char order = descr[0];
            string code = descr[1..];
            DType? dt = code switch { "f4" => DType.Float32, "f8" => DType.Float64, "i4" => DType.Int32, "i8" => DType.Int64, "b1" => DType.Bool, "f2" => DType.Float16, _ => null };
            bool orderOk = order is '<' or '=' || order == '|' && code == "b1" || order == '>';
            if (dt is { } d && orderOk) return (d, order == '>');
        }
        throw new InvalidDataException($"npy: dtype descr '{descr}' is not supported (supported: <f4, <f8, <i4, <i8, |b1, <f2 and their big-endian forms)");
    }

    // The header is a Python dict literal with exactly the keys descr (str), fortran_order (bool) and shape (tuple of ints).
    static (string Descr, bool Fortran, long[] Shape) ParseHeader(string text)
    {
        var p = new LiteralParser(text);
        string? descr = null; bool? fortran = null; long[]? shape = null;
        p.Expect('{');
        while (!p.TryConsume('}'))
        {
            string key = p.String();
            p.Expect(':');
            switch (key)
            {
                case "descr" when descr is null: descr = p.String(); break;
                case "fortran_order" when fortran is null: fortran = p.Bool(); break;
                case "shape" when shape is null: shape = p.IntTuple(); break;
                default: throw new InvalidDataException($"npy: unexpected or repeated header key '{key}'");
            }
            if (!p.TryConsume(',')) { p.Expect('}'); break; }
        }
        p.End();
        if (descr is null || fortran is null || shape is null)
            throw new InvalidDataException($"npy: the header lacks {(descr is null ? "'descr'" : fortran is null ? "'fortran_order'" : "'shape'")}");
        return (descr, fortran.Value, shape);
    }

    sealed class LiteralParser(string s)
    {
        int _i;

        void Skip() { while (_i < s.Length && char.IsWhiteSpace(s[_i])) _i++; }

        InvalidDataException Error(string what) => new($"npy: header {what} at character {_i} of \"{(s.Length > 200 ? s[..200] + "..." : s)}\"");

        public void Expect(char c) { if (!TryConsume(c)) throw Error($"expects '{c}'"); }

        public bool TryConsume(char c)
        {
            Skip();
            if (_i < s.Length && s[_i] == c) { _i++; return true; }
            return false;
        }

        public void End() { Skip(); if (_i != s.Length) throw Error("has trailing text"); }

        public string String()
        {
            Skip();
            if (_i >= s.Length || s[_i] is not ('\'' or '"')) throw Error("expects a string");
            char q = s[_i++];
            int start = _i;
            while (_i < s.Length && s[_i] != q) { if (s[_i] == '\\') throw Error("has an escape in a string"); _i++; }
            if (_i >= s.Length) throw Error("has an unterminated string");
            return s[start.._i++];
        }

        public bool Bool()
        {
            Skip();
            if (string.CompareOrdinal(s, _i, "True", 0, 4) == 0) { _i += 4; return true; }
            if (string.CompareOrdinal(s, _i, "False", 0, 5) == 0) { _i += 5; return false; }
            throw Error("expects True or False");
        }

        public long[] IntTuple()
        {
            Expect('(');
            var dims = new List<long>();
            while (!TryConsume(')'))
            {
                Skip();
                int start = _i;
                while (_i < s.Length && char.IsAsciiDigit(s[_i])) _i++;
                if (_i == start || !long.TryParse(s.AsSpan(start, _i - start), NumberStyles.None, CultureInfo.InvariantCulture, out long d))
                    throw Error("expects a non-negative integer extent");
                if (_i < s.Length && s[_i] == 'L') _i++;   // Python 2 long suffix
                dims.Add(d);
                if (!TryConsume(',')) { Expect(')'); break; }
                if (dims.Count > 64) throw Error("has more than 64 dimensions");
            }
            return dims.ToArray();
        }
    }

    /// <summary>Writes <paramref name="tensor"/> (any device or layout) as a .npy file at <paramref name="path"/>, replacing it.</summary>
    /// <exception cref="NotSupportedException">The dtype is BFloat16, which NumPy has no type for (convert with .To(DType.Float32)).</exception>
    public static void Save(string path, Tensor tensor)
    {
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write);
        Save(fs, tensor);
    }

    /// <summary>Writes <paramref name="tensor"/> as .npy data to <paramref name="stream"/>.</summary>
    /// <exception cref="NotSupportedException">The dtype is BFloat16.</exception>
    public static void Save(Stream stream, Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        string descr = tensor.DType switch
        {
            DType.Float32 => "<f4", DType.Float64 => "<f8", DType.Int32 => "<i4", DType.Int64 => "<i8", DType.Bool => "|b1", DType.Float16 => "<f2",
            _ => throw new NotSupportedException($"npy: NumPy has no dtype for {tensor.DType}; convert with .To(DType.Float32) first"),
        };
        var dims = tensor.Shape.ToArray();
        string shape = dims.Length == 1 ? $"({dims[0]},)" : "(" + string.Join(", ", dims) + ")";
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}";
        // Pad with spaces and a final newline so the data starts on a 64-byte boundary.
        int major = dict.Length + 1 + 10 > ushort.MaxValue ? 2 : 1;
        int pre = major == 1 ? 10 : 12;
        int total = (pre + dict.Length + 1 + 63) / 64 * 64;
        string header = dict.PadRight(total - pre - 1) + "\n";
        var lenBytes = new byte[major == 1 ? 2 : 4];
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(lenBytes, (ushort)header.Length);
        else BinaryPrimitives.WriteUInt32LittleEndian(lenBytes, (uint)header.Length);
        stream.Write(Magic);
        stream.WriteByte((byte)major); stream.WriteByte(0);
        stream.Write(lenBytes);
        stream.Write(Encoding.Latin1.GetBytes(header));
        stream.Write(RawData.ToBytes(tensor));
    }
}
