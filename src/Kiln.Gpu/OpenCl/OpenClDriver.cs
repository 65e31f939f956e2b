using System.Collections.Concurrent;
using System.Text;
using ILGPU;
using Kiln.Kernels.Gpu;

namespace Kiln.Gpu.OpenCl;

/// <summary>
/// A <see cref="KernelDriver"/> that calls an OpenCL driver directly (no ILGPU runtime): each catalog kernel's OpenCL C
/// comes from ILGPU's CLBackend (<see cref="KernelEmitter.OpenCL"/>) and reaches the device on first use, then is cached,
/// by the <see cref="OpenClProgramPath"/> chosen for the device (<see cref="OpenClPathChooser"/>): SPIR 1.2 bitcode from
/// clang-15 where the device has cl_khr_spir (PoCL), a SPIR-V module where it takes SPIR-V IL, else the source itself
/// (NVIDIA's and AMD's OpenCL). ILGPU writes OpenCL C 2.0 with the generic address space, which drivers with only OpenCL
/// C 1.2 reject as is (and which is why ILGPU's own OpenCL accelerator refuses them). Typed launches bind their
/// arguments one by one (<see cref="IArgumentBinder"/>), mapped to <c>clSetKernelArg</c> by <see cref="ClKernelAbi"/>. One in-order queue; calls are serialized.
/// </summary>
internal sealed unsafe class OpenClDriver : KernelDriver
{
    readonly ClApi _api;
    readonly IntPtr _device;
    IntPtr _context, _queue;
    readonly ConcurrentDictionary<string, Lazy<ClKernel>> _kernels = new();
    readonly object _lock = new();

    readonly ClDeviceCaps _caps;

    sealed record ClKernel(IntPtr Program, IntPtr Handle, ClKernelAbi Abi);

    /// <summary>Drives <paramref name="device"/> by <paramref name="path"/>, or by the path <see cref="OpenClPathChooser"/> picks when null.</summary>
    /// <exception cref="NotSupportedException">The device cannot take the path; the message says why.</exception>
    public OpenClDriver(ClApi api, IntPtr device, OpenClProgramPath? path = null)
    {
        _api = api;
        _device = device;
        var caps = ClDeviceCaps.Read(api, device);
        var (chosen, reason) = OpenClPathChooser.Choose(caps, path, api.HasIl);
        Path = chosen ?? throw new NotSupportedException($"OpenCL device {caps.Name} ({caps.Version}): {reason}");
        PathReason = reason;
        _caps = caps;
        Name = $"OpenCL {caps.Name} ({caps.Version}, {Path switch { OpenClProgramPath.Spir => "SPIR", OpenClProgramPath.SpirV => "SPIR-V", _ => "source" }})";
        MaxGroupSize = (int)Math.Min(api.DeviceSize(device, ClApi.DeviceMaxWorkGroupSize), 1024);
        int err;
        IntPtr d = device;
        _context = api.CreateContext(null, 1, &d, IntPtr.Zero, IntPtr.Zero, &err);
        ClApi.Check(err, "clCreateContext");
        _queue = api.CreateCommandQueue(_context, device, 0, &err);
        ClApi.Check(err, "clCreateCommandQueue");
    }

    /// <inheritdoc/>
    public override string Name { get; }
    /// <summary>How kernels reach this device.</summary>
    public OpenClProgramPath Path { get; }
    /// <summary>Why <see cref="Path"/>: the device's capabilities, the tools present, or a forced choice.</summary>
    public string PathReason { get; }
    /// <inheritdoc/>
    public override int MaxGroupSize { get; }
    /// <inheritdoc/>
    public override bool SupportsWarp => false;

    sealed class Buffer(OpenClDriver owner, IntPtr mem, long bytes) : DeviceBuffer
    {
        IntPtr _mem = mem;
        public IntPtr Mem => _mem != IntPtr.Zero ? _mem : throw new ObjectDisposedException(nameof(DeviceBuffer));
        public override long Bytes => bytes;
        public override void Dispose()
        {
            var m = Interlocked.Exchange(ref _mem, IntPtr.Zero);
            if (m != IntPtr.Zero) owner._api.ReleaseMemObject(m);
        }
    }

    static IntPtr M(DeviceBuffer b) => ((Buffer)b).Mem;

    /// <inheritdoc/>
    public override DeviceBuffer Allocate(long bytes)
    {
        bytes = Math.Max(bytes, 8);
        int err;
        var mem = _api.CreateBuffer(_context, ClApi.MemReadWrite, (nuint)bytes, null, &err);
        if (err == -4 || err == -61) throw new OutOfMemoryException($"OpenCL: cannot allocate {bytes} bytes on {Name} (status {err})");
        ClApi.Check(err, "clCreateBuffer");
        return new Buffer(this, mem, bytes);
    }

    /// <inheritdoc/>
    public override void Write<T>(DeviceBuffer dst, T[] src, int count)
    {
        if (count == 0) return;
        lock (_lock)
            fixed (T* p = src)
                ClApi.Check(_api.EnqueueWriteBuffer(_queue, M(dst), 1, 0, (nuint)((long)count * sizeof(T)), p, 0, null, null), "clEnqueueWriteBuffer");
    }

    /// <inheritdoc/>
    public override void Read<T>(DeviceBuffer src, T[] dst, int count)
    {
        if (count == 0) return;
        lock (_lock)
            fixed (T* p = dst)
                ClApi.Check(_api.EnqueueReadBuffer(_queue, M(src), 1, 0, (nuint)((long)count * sizeof(T)), p, 0, null, null), "clEnqueueReadBuffer");
    }

    /// <inheritdoc/>
    public override void Zero(DeviceBuffer buffer, long bytes)
    {
        if (bytes <= 0) return;
        byte zero = 0;
        lock (_lock) ClApi.Check(_api.EnqueueFillBuffer(_queue, M(buffer), &zero, 1, 0, (nuint)bytes, 0, null, null), "clEnqueueFillBuffer");
    }

    /// <inheritdoc/>
    public override IIlgpuRunner? Ilgpu => null;

    /// <inheritdoc/>
    public override void Build(GpuKernel kernel) => Get(kernel);

    /// <inheritdoc/>
    public override IArgumentBinder Bind(GpuKernel kernel) => new Binder(this, kernel, Get(kernel));

    ClKernel Get(GpuKernel k) => _kernels.GetOrAdd(k.Name, _ => new Lazy<ClKernel>(() => Compile(k))).Value;

    ClKernel Compile(GpuKernel k)
    {
        if (k.NeedsWarp) throw new NotSupportedException($"OpenCL: kernel {k.Name} needs warp shuffles; {Name} runs the shared-memory twin");
        string source = KernelEmitter.OpenCL(k);
        var abi = ClKernelAbi.Parse(k.Name, source, k.Grouped);
        var (program, options) = Path switch
        {
            OpenClProgramPath.Spir => (FromBinary(k.Name, SpirCompiler.Compile(k.Name, source)), "-x spir -spir-std=1.2"),
            OpenClProgramPath.SpirV => (FromIl(k.Name, KernelEmitter.SpirV(k)), ""),
            _ => (FromSource(k.Name, OpenClPathChooser.SourceFor(_caps, source)), OpenClPathChooser.SourceOptions(_caps)),
        };
        int status, err;
        IntPtr dev = _device;
        fixed (byte* o = Encoding.ASCII.GetBytes(options + "\0"))
            status = _api.BuildProgram(program, 1, &dev, o, IntPtr.Zero, IntPtr.Zero);
        if (status != ClApi.Success)
        {
            string log = _api.BuildLog(program, _device);
            _api.ReleaseProgram(program);
            throw new NotSupportedException($"OpenCL: kernel {k.Name} does not build on {Name} (status {status}): {log}");
        }
        IntPtr kernel;
        fixed (byte* n = Encoding.ASCII.GetBytes(abi.EntryName + "\0"))
            kernel = _api.CreateKernel(program, n, &err);
        if (err != ClApi.Success) { _api.ReleaseProgram(program); ClApi.Check(err, $"clCreateKernel ({k.Name})"); }
        return new ClKernel(program, kernel, abi);
    }

    IntPtr FromBinary(string kernel, byte[] bitcode)
    {
        nuint len = (nuint)bitcode.Length;
        IntPtr dev = _device;
        int err, binStatus;
        IntPtr program;
        fixed (byte* b = bitcode)
        {
            byte* pb = b;
            program = _api.CreateProgramWithBinary(_context, 1, &dev, &len, &pb, &binStatus, &err);
        }
        ClApi.Check(err, $"clCreateProgramWithBinary ({kernel})");
        return program;
    }

    IntPtr FromIl(string kernel, byte[] module)
    {
        int err;
        IntPtr program;
        fixed (byte* m = module) program = _api.CreateProgramWithIL(_context, m, (nuint)module.Length, &err);
        ClApi.Check(err, $"clCreateProgramWithIL ({kernel})");
        return program;
    }

    IntPtr FromSource(string kernel, string source)
    {
        var bytes = Encoding.UTF8.GetBytes(source);
        nuint len = (nuint)bytes.Length;
        int err;
        IntPtr program;
        fixed (byte* b = bytes)
        {
            byte* pb = b;
            program = _api.CreateProgramWithSource(_context, 1, &pb, &len, &err);
        }
        ClApi.Check(err, $"clCreateProgramWithSource ({kernel})");
        return program;
    }

    /// <summary>One launch's arguments: the buffers in order, then each by-value parameter's bytes (checked by the ABI as they come).</summary>
    sealed class Binder(OpenClDriver owner, GpuKernel kernel, ClKernel k) : IArgumentBinder
    {
        readonly List<DeviceBuffer> _buffers = [];
        readonly List<byte[]> _values = [];

        public void Add<T>(in Arg<T> argument) where T : struct
        {
            _values.Add(k.Abi.Bytes(_values.Count, argument, _buffers.Count));
            if (argument.Buffer is { } b) _buffers.Add(b);
        }

        void Check()
        {
            if (_values.Count != k.Abi.ParameterCount)
                throw new ArgumentException($"OpenCL: kernel {kernel.Name} takes {k.Abi.ParameterCount} arguments, got {_values.Count}");
            if (_buffers.Count != k.Abi.ViewElementSizes.Length)
                throw new ArgumentException($"OpenCL: kernel {kernel.Name} takes {k.Abi.ViewElementSizes.Length} buffers, got {_buffers.Count}");
        }

        public void Launch(int extent)
        {
            Check();
            // Threads per launch are rounded up to this (the kernel returns for threads past the extent); the driver picks the group size.
            const int round = 64;
            nuint global = (nuint)(((long)extent + round - 1) / round * round);
            lock (owner._lock)
            {
                owner.SetArgs(k, kernel.Name, extent, _buffers, _values);
                ClApi.Check(owner._api.EnqueueNDRangeKernel(owner._queue, k.Handle, 1, null, &global, null, 0, null, null), $"clEnqueueNDRangeKernel ({kernel.Name})");
            }
        }

        public void Launch(Index3D grid, Index3D group)
        {
            Check();
            nuint* local = stackalloc nuint[3] { (nuint)group.X, (nuint)group.Y, (nuint)group.Z };
            nuint* global = stackalloc nuint[3] { (nuint)((long)grid.X * group.X), (nuint)((long)grid.Y * group.Y), (nuint)((long)grid.Z * group.Z) };
            lock (owner._lock)
            {
                owner.SetArgs(k, kernel.Name, null, _buffers, _values);
                ClApi.Check(owner._api.EnqueueNDRangeKernel(owner._queue, k.Handle, 3, null, global, local, 0, null, null), $"clEnqueueNDRangeKernel ({kernel.Name})");
            }
        }
    }

    void SetArgs(ClKernel k, string name, int? extent, List<DeviceBuffer> buffers, List<byte[]> values)
    {
        uint index = 0;
        foreach (var v in buffers)
        {
            IntPtr mem = M(v);
            ClApi.Check(_api.SetKernelArg(k.Handle, index++, (nuint)sizeof(IntPtr), &mem), $"clSetKernelArg ({name} buffer)");
        }
        if (extent is int e)
            ClApi.Check(_api.SetKernelArg(k.Handle, index++, sizeof(int), &e), $"clSetKernelArg ({name} extent)");
        foreach (var bytes in values)
            fixed (byte* b = bytes)
                ClApi.Check(_api.SetKernelArg(k.Handle, index++, (nuint)bytes.Length, b), $"clSetKernelArg ({name} argument {index})");
    }

    /// <inheritdoc/>
    public override void Synchronize()
    {
        lock (_lock) ClApi.Check(_api.Finish(_queue), "clFinish");
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        lock (_lock)
        {
            if (_queue == IntPtr.Zero) return;
            _api.Finish(_queue);
            foreach (var lazy in _kernels.Values)
                if (lazy.IsValueCreated)
                {
                    _api.ReleaseKernel(lazy.Value.Handle);
                    _api.ReleaseProgram(lazy.Value.Program);
                }
            _kernels.Clear();
            _api.ReleaseCommandQueue(_queue);
            _api.ReleaseContext(_context);
            _queue = _context = IntPtr.Zero;
        }
    }
}
