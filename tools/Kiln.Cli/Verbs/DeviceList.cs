using Kiln.Gpu;

namespace Kiln.Cli;

/// <summary>`kiln validate --list-devices`: the devices present, each OpenCL device with its program path and why (<see cref="KilnGpu.OpenClDevices"/>).</summary>
public static class DeviceList
{
    /// <summary>Prints the list (JSON lines with <paramref name="json"/>); returns 1 when an OpenCL device cannot be driven, else 0.</summary>
    public static int Print(bool json)
    {
        var openCl = KilnGpu.OpenClDevices();
        foreach (var spec in KilnGpu.Available().Where(s => !s.StartsWith("opencl", StringComparison.Ordinal)))
        {
            string how = spec switch { "cpu" => "Kiln's SIMD kernels", "ilgpu-cpu" => "ILGPU's CPU accelerator", _ => "ILGPU's CUDA accelerator (PTX)" };
            if (json) Cli.JsonLine(new { spec, how });
            else Console.WriteLine($"{spec,-10} {how}");
        }
        foreach (var d in openCl)
        {
            string path = d.Path?.ToString().ToLowerInvariant() ?? "none";
            if (json) Cli.JsonLine(new { spec = d.Spec, name = d.Name, vendor = d.Vendor, version = d.Version, opencl_c = d.OpenClC, path, reason = d.Reason });
            else Console.WriteLine($"{d.Spec,-10} {d.Name} ({d.Vendor}; {d.Version}; {d.OpenClC}): {path}: {d.Reason}");
        }
        return openCl.Any(d => d.Path is null) ? Cli.Failed : 0;
    }
}
