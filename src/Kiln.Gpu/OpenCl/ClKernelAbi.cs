using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu.OpenCl;

/// <summary>
/// How a kernel that ILGPU's CLBackend emitted takes its arguments, read from the emitted OpenCL C itself:
/// <c>kernel void Name(global T* view_0, .., [int extent,] p_0, p_1, ..)</c>. Each ArrayView parameter of the C# kernel
/// becomes one <c>global T*</c> buffer (in parameter order, before everything else) plus, in its own position, a
/// struct <c>{int index; long length}</c>; an implicitly grouped kernel takes the launch extent next (threads at or past
/// it return at once); every other parameter is passed by value as its C type, structs with their fields in C# declaration
/// order (ILGPU keeps that order). Struct layouts follow C rules (natural alignment), which is what the OpenCL compiler uses
/// and what .NET gives a sequential struct. Typed launches make the C# arguments match the kernel's parameters; what is
/// checked here (count, buffer element sizes, value sizes) is that ILGPU's emitted code still matches them, so a change in
/// its code generation is an exception naming the kernel, never a silent mis-launch.
/// </summary>
internal sealed class ClKernelAbi
{
    /// <summary>A C type: a scalar of <see cref="Size"/> bytes, or a struct with flattened scalar fields.</summary>
    sealed record CType(string Name, int Size, int Align, (int Offset, CType Type)[] Fields)
    {
        public bool IsScalar => Fields.Length == 0;

        public IEnumerable<(int Offset, CType Scalar)> Flatten(int baseOffset = 0) => IsScalar
            ? [(baseOffset, this)]
            : Fields.SelectMany(f => f.Type.Flatten(baseOffset + f.Offset));
    }

    static readonly Dictionary<string, int> ScalarSizes = new()
    {
        ["char"] = 1, ["uchar"] = 1, ["short"] = 2, ["ushort"] = 2, ["int"] = 4, ["uint"] = 4,
        ["long"] = 8, ["ulong"] = 8, ["float"] = 4, ["double"] = 8,
    };

    /// <summary>The kernel function's name in the source.</summary>
    public string EntryName { get; }
    /// <summary>Element size of each buffer parameter, in order.</summary>
    public int[] ViewElementSizes { get; }
    /// <summary>True when the parameter after the buffers is the launch extent.</summary>
    public bool TakesExtent { get; }
    readonly CType[] _params;
    readonly string _kernel;

    ClKernelAbi(string kernel, string entry, int[] views, bool extent, CType[] parameters)
    {
        _kernel = kernel; EntryName = entry; ViewElementSizes = views; TakesExtent = extent; _params = parameters;
    }

    static readonly Regex StructRx = new(@"^struct (\w+)\s*\{([^}]*)\};", RegexOptions.Multiline);
    static readonly Regex FieldRx = new(@"^\s*(struct \w+|\w+)\s+(\w+);\s*$", RegexOptions.Multiline);
    static readonly Regex KernelRx = new(@"^kernel void (\w+)\(([^)]*)\)", RegexOptions.Multiline);
    static readonly Regex ParamRx = new(@"^\s*(global (\w+)\*|struct \w+|\w+)\s+(\w+)\s*$");

    /// <summary>Reads the kernel signature of <paramref name="source"/> (the OpenCL C of catalog kernel <paramref name="kernel"/>).</summary>
    /// <exception cref="NotSupportedException">The source has no kernel or uses a parameter type the driver cannot pass.</exception>
    public static ClKernelAbi Parse(string kernel, string source, bool grouped)
    {
        var structs = new Dictionary<string, CType>();
        foreach (Match m in StructRx.Matches(source))
        {
            string name = "struct " + m.Groups[1].Value;
            var fields = new List<(int, CType)>();
            int offset = 0, align = 1;
            bool ok = true;
            foreach (Match f in FieldRx.Matches(m.Groups[2].Value))
            {
                var t = Resolve(f.Groups[1].Value, structs);
                if (t is null) { ok = false; break; }   // a pointer or unknown type: fine for internal structs, never passed
                offset = (offset + t.Align - 1) / t.Align * t.Align;
                fields.Add((offset, t));
                offset += t.Size;
                align = Math.Max(align, t.Align);
            }
            if (ok) structs[name] = new CType(name, (offset + align - 1) / align * align, align, fields.ToArray());
        }
        var k = KernelRx.Match(source);
        if (!k.Success) throw new NotSupportedException($"OpenCL: kernel {kernel}: no kernel function in the emitted source");
        var views = new List<int>();
        var rest = new List<CType>();
        foreach (var raw in k.Groups[2].Value.Split(','))
        {
            var p = ParamRx.Match(raw);
            if (!p.Success) throw new NotSupportedException($"OpenCL: kernel {kernel}: cannot pass parameter '{raw.Trim()}'");
            if (p.Groups[2].Success && p.Groups[2].Value.Length > 0)
            {
                if (rest.Count > 0 || !ScalarSizes.TryGetValue(p.Groups[2].Value, out int es))
                    throw new NotSupportedException($"OpenCL: kernel {kernel}: unexpected buffer parameter '{raw.Trim()}'");
                views.Add(es);
                continue;
            }
            rest.Add(Resolve(p.Groups[1].Value, structs)
                ?? throw new NotSupportedException($"OpenCL: kernel {kernel}: cannot pass parameter '{raw.Trim()}'"));
        }
        bool extent = !grouped;
        if (extent && (rest.Count == 0 || rest[0].Name != "int"))
            throw new NotSupportedException($"OpenCL: kernel {kernel}: an implicitly grouped kernel must take its extent as int after the buffers");
        return new ClKernelAbi(kernel, k.Groups[1].Value, views.ToArray(), extent, (extent ? rest.Skip(1) : rest).ToArray());
    }

    static CType? Resolve(string name, Dictionary<string, CType> structs) =>
        ScalarSizes.TryGetValue(name, out int s) ? new CType(name, s, s, []) : structs.GetValueOrDefault(name);

    /// <summary>Parameters after the buffers (and the extent), each passed by value.</summary>
    public int ParameterCount => _params.Length;

    /// <summary>
    /// The bytes of by-value parameter <paramref name="index"/> for <paramref name="argument"/>: a view's {index, length}
    /// (views start at their buffer's first element, so the index is 0; its buffer is checked against
    /// <paramref name="bufferIndex"/>), or the value's bytes, whose .NET layout is the C layout (sequential, natural alignment).
    /// </summary>
    /// <exception cref="ArgumentException">The argument does not match the kernel's parameter.</exception>
    public byte[] Bytes<T>(int index, in Arg<T> argument, int bufferIndex) where T : struct
    {
        if (index >= _params.Length)
            throw new ArgumentException($"OpenCL: kernel {_kernel} takes {_params.Length} arguments, got more", nameof(argument));
        var p = _params[index];
        var bytes = new byte[p.Size];
        if (argument.View is { } view)
        {
            var slots = p.Flatten().ToArray();
            if (slots.Length != 2 || slots[1].Scalar.Name is not ("int" or "long"))
                throw new ArgumentException($"OpenCL: kernel {_kernel} argument {index} is a view, the kernel's {p.Name} is not {{index, length}}", nameof(argument));
            if (bufferIndex >= ViewElementSizes.Length || view.ElementSize != ViewElementSizes[bufferIndex])
                throw new ArgumentException($"OpenCL: kernel {_kernel} buffer {bufferIndex} does not hold {view.ElementName} elements", nameof(argument));
            var at = bytes.AsSpan(slots[1].Offset);
            if (slots[1].Scalar.Size == 4) BinaryPrimitives.WriteInt32LittleEndian(at, checked((int)argument.Length));
            else BinaryPrimitives.WriteInt64LittleEndian(at, argument.Length);
            return bytes;
        }
        if (RuntimeHelpers.IsReferenceOrContainsReferences<T>())
            throw new ArgumentException($"OpenCL: kernel {_kernel} argument {index}: a {typeof(T).Name} holds references (pass device arrays as DeviceView)", nameof(argument));
        if (Unsafe.SizeOf<T>() != p.Size)
            throw new ArgumentException($"OpenCL: kernel {_kernel} argument {index}: a {Unsafe.SizeOf<T>()}-byte {typeof(T).Name} for the kernel's {p.Size}-byte {p.Name}", nameof(argument));
        T value = argument.Value;
        MemoryMarshal.Write(bytes, in value);
        return bytes;
    }
}
