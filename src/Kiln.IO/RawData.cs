using System.Runtime.InteropServices;

namespace Kiln.IO;

/// <summary>Moves tensor elements to and from raw little-endian bytes (the layout of safetensors and npy data).</summary>
internal static class RawData
{
    /// <summary>Fills <paramref name="destination"/> with the bytes at <paramref name="offset"/> of a source.</summary>
    public delegate void ReadAt(long offset, Span<byte> destination);

    static void RequireLittleEndianHost()
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("Kiln.IO reads and writes little-endian data and needs a little-endian host");
    }

    /// <summary>
    /// A CPU tensor of <paramref name="dtype"/> and <paramref name="shape"/> from the element bytes at
    /// <paramref name="offset"/> of <paramref name="read"/> (byte-swapped first when <paramref name="bigEndian"/>).
    /// Bool bytes other than 0 read as true.
    /// </summary>
    public static Tensor ToTensor(ReadAt read, long offset, DType dtype, Shape shape, bool bigEndian = false)
    {
        RequireLittleEndianHost();
        long bytes = (long)shape.Numel * dtype.Size();
        if (bytes > int.MaxValue)
            throw new NotSupportedException($"a tensor of shape {shape} and dtype {dtype} holds {bytes} bytes; Kiln.IO reads at most {int.MaxValue} bytes per tensor");
        switch (dtype)
        {
            case DType.Float32: return Tensor.FromArray(Fill<float>(read, offset, shape, bigEndian), shape);
            case DType.Float64: return Tensor.FromArray(Fill<double>(read, offset, shape, bigEndian), shape);
            case DType.Int32: return Tensor.FromArray(Fill<int>(read, offset, shape, bigEndian), shape);
            case DType.Int64: return Tensor.FromArray(Fill<long>(read, offset, shape, bigEndian), shape);
            case DType.Float16: return Tensor.FromArray(Fill<Half>(read, offset, shape, bigEndian), shape);
            case DType.BFloat16: return Tensor.FromBFloat16Bits(Fill<ushort>(read, offset, shape, bigEndian), shape);
            case DType.Bool:
                var raw = Fill<byte>(read, offset, shape, false);
                var b = new bool[raw.Length];
                for (int i = 0; i < raw.Length; i++) b[i] = raw[i] != 0;
                return Tensor.FromArray(b, shape);
            default: throw new NotSupportedException($"no raw encoding for dtype {dtype}");
        }
    }

    static T[] Fill<T>(ReadAt read, long offset, Shape shape, bool bigEndian) where T : unmanaged
    {
        var a = new T[shape.Numel];
        var bytes = MemoryMarshal.AsBytes(a.AsSpan());
        read(offset, bytes);
        int size = Marshal.SizeOf<T>();
        if (bigEndian && size > 1)
            for (int i = 0; i < bytes.Length; i += size) bytes.Slice(i, size).Reverse();
        return a;
    }

    /// <summary>The tensor's elements in row-major order as little-endian bytes (copied to the host when needed).</summary>
    public static byte[] ToBytes(Tensor t)
    {
        RequireLittleEndianHost();
        var x = t.Detach();
        return x.DType switch
        {
            DType.Float32 => Bytes(x.ToArray<float>()),
            DType.Float64 => Bytes(x.ToArray<double>()),
            DType.Int32 => Bytes(x.ToArray<int>()),
            DType.Int64 => Bytes(x.ToArray<long>()),
            DType.Float16 => Bytes(x.ToArray<Half>()),
            DType.BFloat16 => Bytes(x.ToArray<ushort>()),
            DType.Bool => x.ToArray<bool>().Select(v => v ? (byte)1 : (byte)0).ToArray(),
            _ => throw new NotSupportedException($"no raw encoding for dtype {x.DType}"),
        };
    }

    static byte[] Bytes<T>(T[] a) where T : unmanaged => MemoryMarshal.AsBytes(a.AsSpan()).ToArray();

    /// <summary>A reader over an in-memory buffer (bounds already validated by the caller; a violation throws).</summary>
    public static ReadAt Over(ReadOnlyMemory<byte> data) => (offset, dst) => data.Span.Slice(checked((int)offset), dst.Length).CopyTo(dst);
}
