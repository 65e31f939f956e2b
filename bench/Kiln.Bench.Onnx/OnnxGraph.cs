using System.Runtime.InteropServices;
using Google.Protobuf;

namespace Kiln.Bench.Onnx;

/// <summary>
/// A float32 ONNX graph written as onnx.proto's ModelProto with Google.Protobuf's <see cref="CodedOutputStream"/>:
/// runtime inputs, constant initializers (weights, which ONNX Runtime may pre-pack as a deployment would), nodes of the
/// default domain at opset <see cref="Opset"/>, and one output.
/// </summary>
public sealed class OnnxGraph
{
    /// <summary>The opset the nodes use: 23, the first with the fused <c>Attention</c> (and <c>Gelu</c>, <c>LayerNormalization</c>).</summary>
    public const int Opset = 23;
    // onnx.proto's IR version of opset 23 (ONNX 1.18).
    const long IrVersion = 11;
    const int Float = 1;

    readonly List<byte[]> _nodes = [], _initializers = [], _inputs = [];
    int _next;

    /// <summary>Adds a runtime float32 input of <paramref name="shape"/>; returns its name.</summary>
    public string Input(string name, long[] shape) { _inputs.Add(ValueInfo(name, shape)); return name; }

    /// <summary>Adds a constant float32 initializer; returns its name.</summary>
    public string Initializer(string name, long[] shape, float[] values)
    {
        var t = new Msg();
        foreach (long d in shape) t.Int(1, d);
        t.Int(2, Float).Str(8, name).Bytes(9, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        _initializers.Add(t.ToArray());
        return name;
    }

    /// <summary>Adds a node <paramref name="op"/> on <paramref name="inputs"/> with integer and float attributes; returns its output's name.</summary>
    public string Node(string op, string[] inputs, (string Name, long Value)[]? ints = null, (string Name, float Value)[]? floats = null)
    {
        string output = $"{op}_{_next++}";
        var n = new Msg();
        foreach (var i in inputs) n.Str(1, i);
        n.Str(2, output).Str(3, output).Str(4, op);
        foreach (var (name, v) in ints ?? []) n.Sub(5, new Msg().Str(1, name).Int(3, v).Int(20, 2));
        foreach (var (name, v) in floats ?? []) n.Sub(5, new Msg().Str(1, name).Float(2, v).Int(20, 1));
        _nodes.Add(n.ToArray());
        return output;
    }

    /// <summary>The model with <paramref name="output"/> as its one (float32) output, serialized.</summary>
    public byte[] Model(string output)
    {
        var g = new Msg();
        foreach (var n in _nodes) g.Bytes(1, n);
        g.Str(2, "kiln_bench");
        foreach (var i in _initializers) g.Bytes(5, i);
        foreach (var i in _inputs) g.Bytes(11, i);
        g.Bytes(12, ValueInfo(output, null));
        return new Msg().Int(1, IrVersion).Str(2, "kiln-bench").Bytes(7, g.ToArray()).Sub(8, new Msg().Str(1, "").Int(2, Opset)).ToArray();
    }

    // ValueInfoProto { name, type: TypeProto { tensor_type: { elem_type, shape } } }; no shape: any.
    static byte[] ValueInfo(string name, long[]? shape)
    {
        var tensor = new Msg().Int(1, Float);
        if (shape is not null)
        {
            var s = new Msg();
            foreach (long d in shape) s.Sub(1, new Msg().Int(1, d));
            tensor.Sub(2, s);
        }
        return new Msg().Str(1, name).Sub(2, new Msg().Sub(1, tensor)).ToArray();
    }

    // One protobuf message being written: fields in order, submessages as length-delimited bytes.
    sealed class Msg
    {
        readonly MemoryStream _buffer = new();
        readonly CodedOutputStream _out;
        public Msg() => _out = new CodedOutputStream(_buffer, leaveOpen: true);
        public Msg Int(int field, long v) { _out.WriteTag(field, WireFormat.WireType.Varint); _out.WriteInt64(v); return this; }
        public Msg Float(int field, float v) { _out.WriteTag(field, WireFormat.WireType.Fixed32); _out.WriteFloat(v); return this; }
        public Msg Str(int field, string v) { _out.WriteTag(field, WireFormat.WireType.LengthDelimited); _out.WriteString(v); return this; }
        public Msg Bytes(int field, byte[] v) { _out.WriteTag(field, WireFormat.WireType.LengthDelimited); _out.WriteBytes(UnsafeByteOperations.UnsafeWrap(v)); return this; }
        public Msg Sub(int field, Msg m) => Bytes(field, m.ToArray());
        public byte[] ToArray() { _out.Flush(); return _buffer.ToArray(); }
    }
}
