using System.Text.RegularExpressions;

namespace Kiln.Gpu.OpenCl;

/// <summary>What an OpenCL device reports that decides the program path.</summary>
internal sealed record ClDeviceCaps(string Name, string Vendor, string Version, string OpenClC, string[] Extensions, string IlVersion, bool GenericAddressSpace)
{
    public static ClDeviceCaps Read(ClApi api, IntPtr device) => new(
        api.DeviceString(device, ClApi.DeviceName), api.DeviceString(device, ClApi.DeviceVendor), api.DeviceString(device, ClApi.DeviceVersion),
        api.DeviceStringOrEmpty(device, ClApi.DeviceOpenClCVersion), api.DeviceString(device, ClApi.DeviceExtensions).Split(' ', StringSplitOptions.RemoveEmptyEntries),
        api.DeviceStringOrEmpty(device, ClApi.DeviceIlVersion), api.DeviceBool(device, ClApi.DeviceGenericAddressSpaceSupport));

    /// <summary>
    /// The -cl-std under which the driver compiles ILGPU's OpenCL C 2.0 unchanged (it marks views <c>__generic</c>), or
    /// null when it has no generic address space (OpenCL C 1.x, or OpenCL 3.0 without the feature: NVIDIA, PoCL). An
    /// OpenCL 3.0 device reports OpenCL C 1.2 as its C version unless it has every 2.0 feature, so 3.0 is read from its
    /// version and the generic address space query.
    /// </summary>
    public string? GenericStd =>
        OpenClC.StartsWith("OpenCL C 2.", StringComparison.Ordinal) ? "-cl-std=CL2.0"
        : Version.StartsWith("OpenCL 3.", StringComparison.Ordinal) && GenericAddressSpace ? "-cl-std=CL3.0"
        : null;
}

/// <summary>Chooses each device's <see cref="OpenClProgramPath"/> and says why.</summary>
internal static class OpenClPathChooser
{
    /// <summary>The environment variable that forces a path for every device: spir, spirv or source.</summary>
    public const string Variable = "KILN_OPENCL_PATH";

    /// <summary>The path forced by <see cref="Variable"/>, or null when it is unset.</summary>
    /// <exception cref="ArgumentException">The variable holds something else than spir, spirv or source.</exception>
    public static OpenClProgramPath? FromEnvironment() => Parse(Environment.GetEnvironmentVariable(Variable));

    /// <summary>The path <paramref name="value"/> of <see cref="Variable"/> names (case-insensitive), or null when it is empty.</summary>
    /// <exception cref="ArgumentException"><paramref name="value"/> is something else than spir, spirv or source.</exception>
    public static OpenClProgramPath? Parse(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim().ToLowerInvariant() switch
    {
        "spir" => OpenClProgramPath.Spir,
        "spirv" => OpenClProgramPath.SpirV,
        "source" => OpenClProgramPath.Source,
        _ => throw new ArgumentException($"{Variable}='{value}' is not spir, spirv or source", Variable),
    };

    /// <summary>
    /// The clCreateProgramWithSource build options for <paramref name="device"/>. With -w: the build log is read only when a
    /// build fails, and some drivers (PoCL) print warnings such as ILGPU's unsupported extension pragmas to standard error.
    /// </summary>
    public static string SourceOptions(ClDeviceCaps device) => device.GenericStd is { } std ? std + " -w" : "-w";

    /// <summary>
    /// The OpenCL C to hand <paramref name="device"/>: ILGPU's <paramref name="source"/> as is where the device has the
    /// generic address space, else as OpenCL C 1.x (the default language of such a driver): <c>__generic</c> becomes
    /// <c>__global</c> and <c>work_group_barrier</c> becomes <c>barrier</c>. ILGPU marks only its views __generic (shared
    /// memory has its own <c>local</c> types), and a kernel's views are its buffers, in global memory; a kernel that put a
    /// local or private address into one would fail to build (an address-space cast error), never run wrongly. ILGPU
    /// writes the one-argument work_group_barrier, which is 1.2's barrier. In the text rather than as -D macros because
    /// drivers define their own (PoCL maps work_group_barrier to a function it declares only for OpenCL C 2.0 and later).
    /// </summary>
    public static string SourceFor(ClDeviceCaps device, string source) => device.GenericStd is not null ? source
        : Regex.Replace(Regex.Replace(source, @"\b__generic\b", "__global"), @"\bwork_group_barrier\b", "barrier");

    /// <summary>
    /// The path for <paramref name="device"/>: <paramref name="forced"/> when given (from the caller, or <see cref="Variable"/>)
    /// and possible; otherwise SPIR where the device has cl_khr_spir (the clang-15 front end Kiln tests with), then SPIR-V
    /// where it takes SPIR-V IL, then source, which every driver takes. Null with the reason when the forced path is impossible.
    /// </summary>
    public static (OpenClProgramPath? Path, string Reason) Choose(ClDeviceCaps device, OpenClProgramPath? forced, bool ilEntryPoint)
    {
        string? spirNo = !device.Extensions.Contains("cl_khr_spir") ? "no cl_khr_spir"
            : SpirCompiler.Clang is null ? "cl_khr_spir, but " + SpirCompiler.MissingReason : null;
        string? spirvNo = !device.IlVersion.Contains("SPIR-V", StringComparison.Ordinal) ? "no SPIR-V IL version"
            : !ilEntryPoint ? "SPIR-V IL, but the ICD loader has no clCreateProgramWithIL (OpenCL 2.1)"
            : SpirVCompiler.MissingReason is { } m ? "SPIR-V IL, but " + m : null;
        string Why(OpenClProgramPath p) => p switch
        {
            OpenClProgramPath.Spir => "cl_khr_spir: SPIR 1.2 bitcode from clang-15",
            OpenClProgramPath.SpirV => $"SPIR-V IL ({device.IlVersion}): a module from clang-15 and llvm-spirv-15, checked by spirv-val",
            _ => device.GenericStd is { } std
                ? $"OpenCL C source, compiled by the driver with {std} ({device.OpenClC}, generic address space)"
                : $"OpenCL C source, compiled by the driver as OpenCL C 1.2 with ILGPU's __generic views as __global ({(device.OpenClC.Length > 0 ? device.OpenClC : device.Version)}, no generic address space)",
        };
        string? WhyNot(OpenClProgramPath p) => p switch { OpenClProgramPath.Spir => spirNo, OpenClProgramPath.SpirV => spirvNo, _ => null };

        string by = "forced by the caller";
        if (forced is null && FromEnvironment() is { } fromEnv) (forced, by) = (fromEnv, $"forced by {Variable}");
        if (forced is { } f)
        {
            by = $"{f.ToString().ToLowerInvariant()} {by}";
            return WhyNot(f) is { } no ? (null, $"{by}, but the device has {no}") : (f, $"{by}: {Why(f)}");
        }
        var path = spirNo is null ? OpenClProgramPath.Spir : spirvNo is null ? OpenClProgramPath.SpirV : OpenClProgramPath.Source;
        string skipped = string.Join("; ", new[] { (OpenClProgramPath.Spir, spirNo), (OpenClProgramPath.SpirV, spirvNo) }
            .TakeWhile(x => x.Item1 != path).Select(x => x.Item2));
        return (path, (skipped.Length > 0 ? skipped + "; " : "") + Why(path));
    }
}
