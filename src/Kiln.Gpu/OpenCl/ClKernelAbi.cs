using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Kiln.Gpu.OpenCl;

/// <summary>
/// How a kernel that ILGPU's CLBackend emitted takes its arguments, read from the emitted OpenCL C itself:
/// <c>kernel void Name(global T* view_0, .., [int extent,] p_0, p_1, ..)</c>. Each ArrayView parameter of the C# kernel
/// becomes one <c>global T*</c> buffer (in parameter order, before everything else) plus, in its own position, a
/// struct <c>{int index; long length}</c>; an implicitly grouped kernel takes the launch extent next (threads at or past
/// it return at once); every other parameter is passed by value as its C type, structs with their fields in C# declaration
/// order (ILGPU keeps that order). Struct layouts follow C rules (natural alignment), which is what the OpenCL compiler uses.
/// Everything is checked against the C# arguments (count, element and field sizes), so a change in ILGPU's code generation
/// is an exception naming the kernel, never a silent mis-launch.
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

    /// <summary>
    /// The bytes of each by-value parameter for <paramref name="args"/> (the C# kernel's arguments after the index, with
    /// <see cref="DeviceView"/> for views), and the buffers, in order.
    /// </summary>
    /// <exception cref="ArgumentException">The arguments do not match the kernel's parameters.</exception>
    public (byte[][] Values, DeviceView[] Views) Marshal(object[] args)
    {
        if (args.Length != _params.Length)
            throw new ArgumentException($"OpenCL: kernel {_kernel} takes {_params.Length} arguments, got {args.Length}", nameof(args));
        var views = new List<DeviceView>();
        var values = new byte[args.Length][];
        for (int i = 0; i < args.Length; i++)
        {
            var p = _params[i];
            var bytes = new byte[p.Size];
            var slots = p.Flatten().ToArray();
            if (args[i] is DeviceView v)
            {
                // The view's by-value part: {index, length}. Views start at their buffer's first element, so the index is 0.
                if (slots.Length != 2 || slots[1].Scalar.Name is not ("int" or "long"))
                    throw new ArgumentException($"OpenCL: kernel {_kernel} argument {i} is a view, the kernel's {p.Name} is not {{index, length}}", nameof(args));
                views.Add(v);
                Write(bytes, slots[1].Offset, slots[1].Scalar, slots[1].Scalar.Size == 4 ? checked((int)v.Length) : v.Length, i);
                values[i] = bytes;
                continue;
            }
            var scalars = Scalars(args[i]).ToArray();
            if (scalars.Length != slots.Length)
                throw new ArgumentException($"OpenCL: kernel {_kernel} argument {i} ({args[i].GetType().Name}) has {scalars.Length} scalar fields, the kernel's {p.Name} has {slots.Length}", nameof(args));
            for (int f = 0; f < slots.Length; f++)
                Write(bytes, slots[f].Offset, slots[f].Scalar, scalars[f], i);
            values[i] = bytes;
        }
        if (views.Count != ViewElementSizes.Length)
            throw new ArgumentException($"OpenCL: kernel {_kernel} takes {ViewElementSizes.Length} buffers, got {views.Count}", nameof(args));
        for (int i = 0; i < views.Count; i++)
            if (System.Runtime.InteropServices.Marshal.SizeOf(views[i].Element) != ViewElementSizes[i])
                throw new ArgumentException($"OpenCL: kernel {_kernel} buffer {i} holds {ViewElementSizes[i]}-byte elements, got {views[i].Element.Name}", nameof(args));
        return (values, views.ToArray());
    }

    static readonly Dictionary<Type, FieldInfo[]> FieldCache = [];

    static IEnumerable<object> Scalars(object value)
    {
        var t = value.GetType();
        if (t.IsPrimitive) { yield return value; yield break; }
        if (!t.IsValueType) throw new ArgumentException($"OpenCL: cannot pass a {t.Name} to a kernel");
        FieldInfo[] fields;
        lock (FieldCache)
            if (!FieldCache.TryGetValue(t, out fields!))
                FieldCache[t] = fields = t.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic).OrderBy(f => f.MetadataToken).ToArray();
        foreach (var f in fields)
            foreach (var s in Scalars(f.GetValue(value)!))
                yield return s;
    }

    void Write(byte[] bytes, int offset, CType slot, object value, int arg)
    {
        var span = bytes.AsSpan(offset, slot.Size);
        bool floating = slot.Name is "float" or "double";
        switch (value)
        {
            case float f when slot.Name == "float": MemoryMarshal.Write(span, in f); return;
            case double d when slot.Name == "double": MemoryMarshal.Write(span, in d); return;
            case float or double:
                throw new ArgumentException($"OpenCL: kernel {_kernel} argument {arg}: a {value.GetType().Name} for a {slot.Name} field", "args");
        }
        if (floating) throw new ArgumentException($"OpenCL: kernel {_kernel} argument {arg}: a {value.GetType().Name} for a {slot.Name} field", "args");
        if (System.Runtime.InteropServices.Marshal.SizeOf(value.GetType()) != slot.Size)
            throw new ArgumentException($"OpenCL: kernel {_kernel} argument {arg}: a {value.GetType().Name} for a {slot.Name} field", "args");
        ulong bits = value switch
        {
            byte b => b, sbyte b => (ulong)b, short s => (ulong)s, ushort s => s, int x => (ulong)x,
            uint x => x, long x => (ulong)x, ulong x => x,
            _ => throw new ArgumentException($"OpenCL: kernel {_kernel} argument {arg}: cannot pass a {value.GetType().Name}", "args"),
        };
        for (int b = 0; b < slot.Size; b++) span[b] = (byte)(bits >> (8 * b));
    }
}
