namespace Kiln.Gpu;

/// <summary>How Kiln's OpenCL driver hands a kernel to an OpenCL device.</summary>
public enum OpenClProgramPath
{
    /// <summary>SPIR 1.2 bitcode from clang-15 (<c>clCreateProgramWithBinary</c>): devices with <c>cl_khr_spir</c>, e.g. PoCL.</summary>
    Spir,
    /// <summary>A SPIR-V module from clang-15 and llvm-spirv-15 (<c>clCreateProgramWithIL</c>): devices whose IL versions list SPIR-V (OpenCL 2.1+, <c>cl_khr_il_program</c>).</summary>
    SpirV,
    /// <summary>ILGPU's OpenCL C, compiled by the driver (<c>clCreateProgramWithSource</c>): any device, e.g. NVIDIA's and AMD's OpenCL.</summary>
    Source,
}

/// <summary>An OpenCL device and how Kiln would drive it (<see cref="KilnGpu.OpenClDevices"/>).</summary>
/// <param name="Spec">The spec <see cref="KilnGpu.Open(string)"/> takes, e.g. <c>opencl:0</c>.</param>
/// <param name="Name">CL_DEVICE_NAME.</param>
/// <param name="Vendor">CL_DEVICE_VENDOR.</param>
/// <param name="Version">CL_DEVICE_VERSION, e.g. "OpenCL 3.0 PoCL ...".</param>
/// <param name="OpenClC">CL_DEVICE_OPENCL_C_VERSION, e.g. "OpenCL C 1.2 PoCL".</param>
/// <param name="Path">The path the driver takes, or null when it can take none (see <paramref name="Reason"/>).</param>
/// <param name="Reason">Why that path (or why none): the device's capabilities and the tools present, and a forced choice.</param>
public sealed record OpenClDeviceInfo(string Spec, string Name, string Vendor, string Version, string OpenClC, OpenClProgramPath? Path, string Reason);
