using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;

namespace Kiln.Gpu.OpenCl;

/// <summary>
/// Compiles ILGPU's OpenCL C with clang-15 for the native <see cref="TargetToolchain.Clang"/> targets (amdgcn objects,
/// nvptx64 assembly), linking libclc-15's builtins, and checks that what comes out is a real artifact for that target:
/// an AMDGPU ELF (e_machine 224) or PTX for the architecture, defining the kernel's entry, with no unresolved calls.
/// </summary>
internal static partial class ClangTargetCompiler
{
    static readonly string[] LibclcDirs = ["/usr/lib/clc", "/usr/share/clc", "/usr/lib/llvm-15/lib/clc"];

    /// <summary>The path of <paramref name="file"/> in libclc's directory, or null when libclc-15 is not installed.</summary>
    static string? LibclcPath(string file) => LibclcDirs.Select(d => Path.Combine(d, file)).FirstOrDefault(File.Exists);

    /// <summary>Why <paramref name="target"/> cannot be compiled here, or null.</summary>
    public static string? MissingReason(CompileTarget target) =>
        SpirCompiler.Clang is null ? "missing tool clang-15 (apt-get install -y clang-15)"
        : LibclcPath(target.Libclc!) is null ? $"missing libclc-15's {target.Libclc} (apt-get install -y libclc-15)"
        : null;

    /// <summary>The artifact of OpenCL C <paramref name="source"/> for <paramref name="target"/>, checked.</summary>
    /// <exception cref="NotSupportedException">A tool is missing, clang failed, or the artifact is not what the target needs; the message says which.</exception>
    public static byte[] Compile(string kernel, string source, CompileTarget target)
    {
        if (MissingReason(target) is { } missing) throw new NotSupportedException($"{target.Name}: {missing}");
        var dir = Directory.CreateTempSubdirectory("kiln-target-");
        try
        {
            string src = Path.Combine(dir.FullName, "k.cl"), output = Path.Combine(dir.FullName, "k" + target.Extension);
            File.WriteAllText(src, source);
            string args = $"{target.Flags} -Xclang -mlink-builtin-bitcode -Xclang \"{LibclcPath(target.Libclc!)}\" -o \"{output}\" \"{src}\"";
            var (code, err) = SpirVCompiler.Exec(SpirCompiler.Clang!, args);
            if (code != 0) throw new NotSupportedException($"{target.Name}: kernel {kernel}: clang-15 exited {code}: {err}");
            var artifact = File.ReadAllBytes(output);
            string entry = KernelEmitter.OpenClEntry(source);
            string? problem = target.Extension == ".o" ? CheckAmdGpuElf(artifact, entry) : CheckPtx(Encoding.UTF8.GetString(artifact), entry, sm: 60);
            if (problem is not null) throw new NotSupportedException($"{target.Name}: kernel {kernel}: {problem}");
            return artifact;
        }
        finally { dir.Delete(recursive: true); }
    }

    /// <summary>The ELF machine number of AMD GPUs (EM_AMDGPU).</summary>
    public const ushort EmAmdGpu = 224;

    /// <summary>
    /// Null when <paramref name="elf"/> is a 64-bit AMDGPU ELF object that defines <paramref name="entry"/> and leaves no
    /// symbol undefined (an undefined one is a builtin no library supplied: the code object would not load); else what is wrong.
    /// </summary>
    public static string? CheckAmdGpuElf(byte[] elf, string entry)
    {
        if (elf.Length < 64 || elf[0] != 0x7F || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F' || elf[4] != 2)
            return "not a 64-bit ELF file";
        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(elf.AsSpan(18));
        if (machine != EmAmdGpu) return $"ELF machine {machine}, not AMDGPU ({EmAmdGpu})";
        var (defined, undefined) = Symbols(elf);
        if (undefined.Count > 0) return $"unresolved symbols: {string.Join(", ", undefined)}";
        return defined.Contains(entry) ? null : $"no symbol for the entry {entry}";
    }

    /// <summary>The defined and undefined named symbols of a 64-bit little-endian ELF file's symbol tables.</summary>
    static (HashSet<string> Defined, List<string> Undefined) Symbols(byte[] elf)
    {
        var s = elf.AsSpan();
        long shoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(s[0x28..]);
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(s[0x3A..]), shnum = BinaryPrimitives.ReadUInt16LittleEndian(s[0x3C..]);
        (long Offset, long Size, int Link, uint Type) Section(int i)
        {
            var h = elf.AsSpan((int)(shoff + (long)i * shentsize), shentsize);
            return ((long)BinaryPrimitives.ReadUInt64LittleEndian(h[24..]), (long)BinaryPrimitives.ReadUInt64LittleEndian(h[32..]),
                (int)BinaryPrimitives.ReadUInt32LittleEndian(h[40..]), BinaryPrimitives.ReadUInt32LittleEndian(h[4..]));
        }
        var defined = new HashSet<string>();
        var undefined = new List<string>();
        for (int i = 0; i < shnum; i++)
        {
            var symtab = Section(i);
            if (symtab.Type != 2) continue;   // SHT_SYMTAB
            var strtab = Section(symtab.Link);
            for (long o = symtab.Offset + 24; o + 24 <= symtab.Offset + symtab.Size; o += 24)   // entry 0 is the null symbol
            {
                uint nameAt = BinaryPrimitives.ReadUInt32LittleEndian(s[(int)o..]);
                if (nameAt == 0) continue;
                var rest = s[(int)(strtab.Offset + nameAt)..];
                string name = Encoding.ASCII.GetString(rest[..rest.IndexOf((byte)0)]);
                if (BinaryPrimitives.ReadUInt16LittleEndian(s[(int)(o + 6)..]) == 0) undefined.Add(name); else defined.Add(name);
            }
        }
        return (defined, undefined);
    }

    /// <summary>
    /// Null when <paramref name="ptx"/> targets sm_<paramref name="sm"/>, has the entry <paramref name="entry"/>, and calls
    /// no function it only declares (a builtin no library supplied); else what is wrong.
    /// </summary>
    public static string? CheckPtx(string ptx, string entry, int sm)
    {
        if (!Regex.IsMatch(ptx, $@"^\.target sm_{sm}\b", RegexOptions.Multiline)) return $"no '.target sm_{sm}' line";
        if (!Regex.IsMatch(ptx, $@"\.entry {Regex.Escape(entry)}\(")) return $"no '.entry {entry}'";
        var declared = DeclaredOnly().Matches(ptx).Select(m => m.Groups[1].Value).ToArray();
        return declared.Length == 0 ? null : $"unresolved functions: {string.Join(", ", declared)}";
    }

    // A prototype without a body: `.func (.param ...) name (.param ...) ;` or `.extern .func ...`.
    [GeneratedRegex(@"(?:^|\n)(?:\.extern\s+)?\.func\s+(?:\([^)]*\)\s*)?([\w$]+)\s*(?:\([^)]*\))?\s*;")]
    private static partial Regex DeclaredOnly();
}
