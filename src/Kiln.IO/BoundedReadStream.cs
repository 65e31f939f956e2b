namespace Kiln.IO;

/// <summary>
/// A read-only view of a decompressing stream that throws <see cref="InvalidDataException"/> once more than
/// <c>limit</c> bytes come out of it, and turns the decompressor's other complaints about corrupt input into
/// <see cref="InvalidDataException"/> too, so a small compressed file cannot expand without bound.
/// </summary>
internal sealed class BoundedReadStream(Stream inner, long limit, string source) : Stream
{
    long _read;

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int r;
        try { r = inner.Read(buffer); }
        catch (Exception e) when (e is not InvalidDataException and (IOException or NotSupportedException))
        {
            throw new InvalidDataException($"{source}: the compressed data is corrupt: {e.Message}", e);
        }
        _read += r;
        if (_read > limit)
            throw new InvalidDataException($"{source}: expands past the {limit}-byte limit on decompressed data (ReadLimits.MaxDecompressedBytes)");
        return r;
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _read; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) inner.Dispose();
        base.Dispose(disposing);
    }
}
