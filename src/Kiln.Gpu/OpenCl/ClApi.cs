using System.Runtime.InteropServices;
using System.Text;

namespace Kiln.Gpu.OpenCl;

/// <summary>
/// The few OpenCL 1.2 entry points the driver needs, bound at run time from the ICD loader (libOpenCL.so.1 on Linux,
/// OpenCL.dll on Windows) so that a machine without OpenCL still loads Kiln.Gpu; <see cref="Instance"/> is null there.
/// </summary>
internal sealed unsafe class ClApi
{
    public const int Success = 0;
    public const ulong DeviceTypeAll = 0xFFFFFFFF;
    public const uint DeviceName = 0x102B, DeviceVendor = 0x102C, DeviceVersion = 0x102F, DeviceMaxWorkGroupSize = 0x1004,
        DeviceExtensions = 0x1030, DeviceOpenClCVersion = 0x103D, DeviceIlVersion = 0x105B, DeviceGenericAddressSpaceSupport = 0x1069;
    public const uint ProgramBuildLog = 0x1183;
    public const ulong MemReadWrite = 1;

    static readonly string[] Candidates = OperatingSystem.IsWindows() ? ["OpenCL.dll"]
        : OperatingSystem.IsMacOS() ? ["/System/Library/Frameworks/OpenCL.framework/OpenCL"]
        : ["libOpenCL.so.1", "libOpenCL.so"];

    static readonly Lazy<ClApi?> Loaded = new(Load);

    /// <summary>The bound API, or null when no OpenCL ICD loader is installed.</summary>
    public static ClApi? Instance => Loaded.Value;

    /// <summary>Why <see cref="Instance"/> is null (for error messages).</summary>
    public static string MissingReason => $"no OpenCL ICD loader found (tried {string.Join(", ", Candidates)}; on Debian: apt-get install ocl-icd-libopencl1 pocl-opencl-icd)";

    static ClApi? Load()
    {
        foreach (var name in Candidates)
            if (NativeLibrary.TryLoad(name, out var lib))
                return new ClApi(lib);
        return null;
    }

    readonly IntPtr _lib;
    ClApi(IntPtr lib)
    {
        _lib = lib;
        GetPlatformIDs = (delegate* unmanaged<uint, IntPtr*, uint*, int>)F("clGetPlatformIDs");
        GetDeviceIDs = (delegate* unmanaged<IntPtr, ulong, uint, IntPtr*, uint*, int>)F("clGetDeviceIDs");
        GetDeviceInfo = (delegate* unmanaged<IntPtr, uint, nuint, void*, nuint*, int>)F("clGetDeviceInfo");
        CreateContext = (delegate* unmanaged<IntPtr*, uint, IntPtr*, IntPtr, IntPtr, int*, IntPtr>)F("clCreateContext");
        CreateCommandQueue = (delegate* unmanaged<IntPtr, IntPtr, ulong, int*, IntPtr>)F("clCreateCommandQueue");
        CreateBuffer = (delegate* unmanaged<IntPtr, ulong, nuint, void*, int*, IntPtr>)F("clCreateBuffer");
        EnqueueWriteBuffer = (delegate* unmanaged<IntPtr, IntPtr, uint, nuint, nuint, void*, uint, IntPtr*, IntPtr*, int>)F("clEnqueueWriteBuffer");
        EnqueueReadBuffer = (delegate* unmanaged<IntPtr, IntPtr, uint, nuint, nuint, void*, uint, IntPtr*, IntPtr*, int>)F("clEnqueueReadBuffer");
        EnqueueFillBuffer = (delegate* unmanaged<IntPtr, IntPtr, void*, nuint, nuint, nuint, uint, IntPtr*, IntPtr*, int>)F("clEnqueueFillBuffer");
        CreateProgramWithBinary = (delegate* unmanaged<IntPtr, uint, IntPtr*, nuint*, byte**, int*, int*, IntPtr>)F("clCreateProgramWithBinary");
        CreateProgramWithSource = (delegate* unmanaged<IntPtr, uint, byte**, nuint*, int*, IntPtr>)F("clCreateProgramWithSource");
        // OpenCL 2.1: an older ICD loader lacks it, and then no device takes the SPIR-V path.
        CreateProgramWithIL = NativeLibrary.TryGetExport(_lib, "clCreateProgramWithIL", out var il) ? (delegate* unmanaged<IntPtr, void*, nuint, int*, IntPtr>)il : null;
        BuildProgram = (delegate* unmanaged<IntPtr, uint, IntPtr*, byte*, IntPtr, IntPtr, int>)F("clBuildProgram");
        GetProgramBuildInfo = (delegate* unmanaged<IntPtr, IntPtr, uint, nuint, void*, nuint*, int>)F("clGetProgramBuildInfo");
        CreateKernel = (delegate* unmanaged<IntPtr, byte*, int*, IntPtr>)F("clCreateKernel");
        SetKernelArg = (delegate* unmanaged<IntPtr, uint, nuint, void*, int>)F("clSetKernelArg");
        EnqueueNDRangeKernel = (delegate* unmanaged<IntPtr, IntPtr, uint, nuint*, nuint*, nuint*, uint, IntPtr*, IntPtr*, int>)F("clEnqueueNDRangeKernel");
        Finish = (delegate* unmanaged<IntPtr, int>)F("clFinish");
        ReleaseMemObject = (delegate* unmanaged<IntPtr, int>)F("clReleaseMemObject");
        ReleaseKernel = (delegate* unmanaged<IntPtr, int>)F("clReleaseKernel");
        ReleaseProgram = (delegate* unmanaged<IntPtr, int>)F("clReleaseProgram");
        ReleaseCommandQueue = (delegate* unmanaged<IntPtr, int>)F("clReleaseCommandQueue");
        ReleaseContext = (delegate* unmanaged<IntPtr, int>)F("clReleaseContext");
    }

    IntPtr F(string name) => NativeLibrary.GetExport(_lib, name);

    public readonly delegate* unmanaged<uint, IntPtr*, uint*, int> GetPlatformIDs;
    public readonly delegate* unmanaged<IntPtr, ulong, uint, IntPtr*, uint*, int> GetDeviceIDs;
    public readonly delegate* unmanaged<IntPtr, uint, nuint, void*, nuint*, int> GetDeviceInfo;
    public readonly delegate* unmanaged<IntPtr*, uint, IntPtr*, IntPtr, IntPtr, int*, IntPtr> CreateContext;
    public readonly delegate* unmanaged<IntPtr, IntPtr, ulong, int*, IntPtr> CreateCommandQueue;
    public readonly delegate* unmanaged<IntPtr, ulong, nuint, void*, int*, IntPtr> CreateBuffer;
    public readonly delegate* unmanaged<IntPtr, IntPtr, uint, nuint, nuint, void*, uint, IntPtr*, IntPtr*, int> EnqueueWriteBuffer;
    public readonly delegate* unmanaged<IntPtr, IntPtr, uint, nuint, nuint, void*, uint, IntPtr*, IntPtr*, int> EnqueueReadBuffer;
    public readonly delegate* unmanaged<IntPtr, IntPtr, void*, nuint, nuint, nuint, uint, IntPtr*, IntPtr*, int> EnqueueFillBuffer;
    public readonly delegate* unmanaged<IntPtr, uint, IntPtr*, nuint*, byte**, int*, int*, IntPtr> CreateProgramWithBinary;
    public readonly delegate* unmanaged<IntPtr, uint, byte**, nuint*, int*, IntPtr> CreateProgramWithSource;
    /// <summary>clCreateProgramWithIL, or null when the ICD loader predates OpenCL 2.1.</summary>
    public readonly delegate* unmanaged<IntPtr, void*, nuint, int*, IntPtr> CreateProgramWithIL;
    /// <summary>True when the ICD loader has clCreateProgramWithIL.</summary>
    public bool HasIl => CreateProgramWithIL != null;
    public readonly delegate* unmanaged<IntPtr, uint, IntPtr*, byte*, IntPtr, IntPtr, int> BuildProgram;
    public readonly delegate* unmanaged<IntPtr, IntPtr, uint, nuint, void*, nuint*, int> GetProgramBuildInfo;
    public readonly delegate* unmanaged<IntPtr, byte*, int*, IntPtr> CreateKernel;
    public readonly delegate* unmanaged<IntPtr, uint, nuint, void*, int> SetKernelArg;
    public readonly delegate* unmanaged<IntPtr, IntPtr, uint, nuint*, nuint*, nuint*, uint, IntPtr*, IntPtr*, int> EnqueueNDRangeKernel;
    public readonly delegate* unmanaged<IntPtr, int> Finish;
    public readonly delegate* unmanaged<IntPtr, int> ReleaseMemObject;
    public readonly delegate* unmanaged<IntPtr, int> ReleaseKernel;
    public readonly delegate* unmanaged<IntPtr, int> ReleaseProgram;
    public readonly delegate* unmanaged<IntPtr, int> ReleaseCommandQueue;
    public readonly delegate* unmanaged<IntPtr, int> ReleaseContext;

    /// <summary>Throws <see cref="InvalidOperationException"/> naming the call when <paramref name="status"/> is an error.</summary>
    public static void Check(int status, string call)
    {
        if (status != Success) throw new InvalidOperationException($"OpenCL {call} failed with status {status}");
    }

    /// <summary>Every device of every platform, in platform order (the index <see cref="KilnGpu.CreateOpenCl(int)"/> takes).</summary>
    public IntPtr[] Devices()
    {
        uint np = 0;
        // An ICD loader with no platform installed answers CL_PLATFORM_NOT_FOUND_KHR (-1001): no devices.
        if (GetPlatformIDs(0, null, &np) != Success || np == 0) return [];
        var platforms = new IntPtr[np];
        fixed (IntPtr* p = platforms) Check(GetPlatformIDs(np, p, null), "clGetPlatformIDs");
        var all = new List<IntPtr>();
        foreach (var platform in platforms)
        {
            uint nd = 0;
            if (GetDeviceIDs(platform, DeviceTypeAll, 0, null, &nd) != Success || nd == 0) continue;
            var devices = new IntPtr[nd];
            fixed (IntPtr* d = devices) Check(GetDeviceIDs(platform, DeviceTypeAll, nd, d, null), "clGetDeviceIDs");
            all.AddRange(devices);
        }
        return all.ToArray();
    }

    /// <summary>A string property of a device.</summary>
    public string DeviceString(IntPtr device, uint param)
    {
        nuint size = 0;
        Check(GetDeviceInfo(device, param, 0, null, &size), "clGetDeviceInfo");
        var buf = new byte[(int)size];
        fixed (byte* b = buf) Check(GetDeviceInfo(device, param, size, b, null), "clGetDeviceInfo");
        return Encoding.ASCII.GetString(buf).TrimEnd('\0').Trim();
    }

    /// <summary>A string property of a device, or "" when the device does not know it (a query newer than its OpenCL version).</summary>
    public string DeviceStringOrEmpty(IntPtr device, uint param)
    {
        nuint size = 0;
        if (GetDeviceInfo(device, param, 0, null, &size) != Success || size == 0) return "";
        return DeviceString(device, param);
    }

    /// <summary>A cl_bool property of a device, or false when the device does not know it (a query newer than its OpenCL version).</summary>
    public bool DeviceBool(IntPtr device, uint param)
    {
        uint v = 0;
        return GetDeviceInfo(device, param, sizeof(uint), &v, null) == Success && v != 0;
    }

    /// <summary>A size_t property of a device.</summary>
    public long DeviceSize(IntPtr device, uint param)
    {
        nuint v = 0;
        Check(GetDeviceInfo(device, param, (nuint)sizeof(nuint), &v, null), "clGetDeviceInfo");
        return (long)v;
    }

    /// <summary>The build log of <paramref name="program"/> on <paramref name="device"/>.</summary>
    public string BuildLog(IntPtr program, IntPtr device)
    {
        nuint size = 0;
        if (GetProgramBuildInfo(program, device, ProgramBuildLog, 0, null, &size) != Success) return "";
        var buf = new byte[(int)size];
        fixed (byte* b = buf) GetProgramBuildInfo(program, device, ProgramBuildLog, size, b, null);
        return Encoding.UTF8.GetString(buf).TrimEnd('\0').Trim();
    }
}
