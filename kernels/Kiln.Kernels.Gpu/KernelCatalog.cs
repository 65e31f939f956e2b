using System.Reflection;

namespace Kiln.Kernels.Gpu;

/// <summary>One compiled kernel: an instantiation of a generic kernel method for one dtype.</summary>
/// <param name="Name">Stable name, family.kernel.dtype (file names of emitted code).</param>
/// <param name="Family">The op family (the file that holds it).</param>
/// <param name="Method">The kernel method, closed over its type arguments.</param>
/// <param name="Grouped">True for explicitly grouped kernels (shared memory, barriers); false for one thread per element.</param>
/// <param name="NeedsWarp">True when the kernel uses warp shuffles (OpenCL devices need subgroups; backends without them use the shared-memory twin).</param>
public sealed record KernelEntry(string Name, string Family, MethodInfo Method, bool Grouped, bool NeedsWarp);

/// <summary>Every GPU kernel instantiation the ILGPU backend can launch: the list that emission, validation and tests walk.</summary>
public static class KernelCatalog
{
    /// <summary>Storage types by dtype name: element type and its ops struct.</summary>
    static readonly (string Name, Type T, Type Ops)[] Storage =
    [
        ("f32", typeof(float), typeof(F32)), ("f64", typeof(double), typeof(F64)), ("i32", typeof(int), typeof(I32)),
        ("i64", typeof(long), typeof(I64)), ("bool", typeof(byte), typeof(U8)), ("bf16", typeof(ushort), typeof(BF16)),
        ("f16", typeof(ushort), typeof(F16)),
    ];

    static readonly string[] Floats = ["f32", "f64"], Numbers = ["f32", "f64", "i32", "i64"], Plain = ["f32", "f64", "i32", "i64", "bool"];

    static (string Name, Type T, Type Ops) S(string name) => Storage.First(s => s.Name == name);

    static MethodInfo M(Type owner, string name, params Type[] args) =>
        owner.GetMethod(name, BindingFlags.Public | BindingFlags.Static)!.MakeGenericMethod(args);

    /// <summary>All kernels, in a stable order.</summary>
    public static IReadOnlyList<KernelEntry> All { get; } = Build();

    static List<KernelEntry> Build()
    {
        var list = new List<KernelEntry>();
        void Add(string family, string kernel, string dtype, MethodInfo m, bool grouped, bool warp = false) =>
            list.Add(new KernelEntry($"{family}.{kernel}.{dtype}", family, m, grouped, warp));

        var el = typeof(Elementwise);
        foreach (var d in new[] { "f32", "f64", "i32", "i64", "bool", "bf16" })
        {
            Add("elementwise", "fill", d == "bf16" ? "u16" : d, M(el, nameof(Elementwise.Fill), S(d).T), false);
            Add("elementwise", "copy", d == "bf16" ? "u16" : d, M(el, nameof(Elementwise.Copy), S(d).T), false);
        }
        foreach (var a in Storage)
            foreach (var b in Storage)
                if (a.Name != b.Name)
                    Add("elementwise", "convert", $"{a.Name}_{b.Name}", M(el, nameof(Elementwise.Convert), a.T, b.T, a.Ops, b.Ops), false);
        foreach (var d in Floats) Add("elementwise", "unary", d, M(el, nameof(Elementwise.Unary), S(d).T, S(d).Ops), false);
        foreach (var d in Numbers)
        {
            Add("elementwise", "binary", d, M(el, nameof(Elementwise.Binary), S(d).T, S(d).Ops), false);
            Add("elementwise", "compare", d, M(el, nameof(Elementwise.Compare), S(d).T, S(d).Ops), false);
            Add("elementwise", "clamp", d, M(el, nameof(Elementwise.Clamp), S(d).T, S(d).Ops), false);
        }
        foreach (var d in Plain) Add("elementwise", "where", d, M(el, nameof(Elementwise.Where), S(d).T), false);

        var rd = typeof(Reduce);
        foreach (var d in Numbers)
        {
            Add("reduce", "rows", d, M(rd, nameof(Reduce.Rows), S(d).T, S(d).Ops), true);
            Add("reduce", "rows_warp", d, M(rd, nameof(Reduce.RowsWarp), S(d).T, S(d).Ops), true, warp: true);
            Add("reduce", "cols", d, M(rd, nameof(Reduce.Cols), S(d).T, S(d).Ops), false);
            Add("reduce", "arg_rows", d, M(rd, nameof(Reduce.ArgRows), S(d).T, S(d).Ops), true);
            Add("reduce", "cumsum_rows", d, M(rd, nameof(Reduce.CumsumRows), S(d).T, S(d).Ops), true);
        }
        list.Add(new KernelEntry("reduce.any_all_rows.bool", "reduce", rd.GetMethod(nameof(Reduce.AnyAllRows))!, false, false));

        foreach (var d in Floats)
        {
            Add("softmax", "rows", d, M(typeof(Softmax), nameof(Softmax.Rows), S(d).T, S(d).Ops), true);
            Add("layernorm", "rows", d, M(typeof(LayerNorm), nameof(LayerNorm.Rows), S(d).T, S(d).Ops), true);
            Add("layernorm", "rms_rows", d, M(typeof(LayerNorm), nameof(LayerNorm.RmsRows), S(d).T, S(d).Ops), true);
            Add("gemm", "tiled", d, M(typeof(Gemm), nameof(Gemm.Tiled), S(d).T, S(d).Ops), true);
            Add("attention", "forward", d, M(typeof(Attention), nameof(Attention.Forward), S(d).T, S(d).Ops), false);
            Add("attention", "delta", d, M(typeof(Attention), nameof(Attention.Delta), S(d).T, S(d).Ops), false);
            Add("attention", "grad_q", d, M(typeof(Attention), nameof(Attention.GradQ), S(d).T, S(d).Ops), false);
            Add("attention", "grad_kv", d, M(typeof(Attention), nameof(Attention.GradKV), S(d).T, S(d).Ops), false);
        }
        foreach (var d in Plain)
        {
            Add("indexing", "gather", d, M(typeof(Indexing), nameof(Indexing.Gather), S(d).T), false);
            Add("indexing", "scatter", d, M(typeof(Indexing), nameof(Indexing.Scatter), S(d).T, S(d).Ops), false);
            Add("philox", "fill", d, M(typeof(Philox), nameof(Philox.Fill), S(d).T, S(d).Ops), false);
        }
        foreach (var d in Numbers)
        {
            Add("sort", "rank_rows", d, M(typeof(Sort), nameof(Sort.RankRows), S(d).T, S(d).Ops), false);
            Add("sort", "bitonic_init", d, M(typeof(Sort), nameof(Sort.BitonicInit), S(d).T), false);
            Add("sort", "bitonic_step", d, M(typeof(Sort), nameof(Sort.BitonicStep), S(d).T, S(d).Ops), false);
            Add("sort", "bitonic_finish", d, M(typeof(Sort), nameof(Sort.BitonicFinish), S(d).T), false);
        }
        var st = typeof(StumpSmoothing);
        list.Add(new KernelEntry("stump.pdf_init.f64", "stump", st.GetMethod(nameof(StumpSmoothing.PdfInit))!, false, false));
        list.Add(new KernelEntry("stump.pdf_step.f64", "stump", st.GetMethod(nameof(StumpSmoothing.PdfStep))!, false, false));
        list.Add(new KernelEntry("stump.tail.f64", "stump", st.GetMethod(nameof(StumpSmoothing.Tail))!, false, false));
        return list;
    }
}
