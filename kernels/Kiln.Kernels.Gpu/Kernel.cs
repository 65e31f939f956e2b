using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace Kiln.Kernels.Gpu;

/// <summary>A block of raw device memory owned by a kernel host (an ILGPU accelerator or an OpenCL driver).</summary>
public abstract class DeviceBuffer : IDisposable
{
    /// <summary>Size in bytes.</summary>
    public abstract long Bytes { get; }
    /// <summary>Frees the memory.</summary>
    public abstract void Dispose();
}

/// <summary>
/// A kernel argument that is a device array: <paramref name="Length"/> elements of <typeparamref name="E"/> from the
/// start of <paramref name="Buffer"/>. It converts to the argument of an <c>ArrayView&lt;E&gt;</c> parameter, so a
/// launch with a view of the wrong element type does not compile.
/// </summary>
public readonly record struct DeviceView<E>(DeviceBuffer Buffer, long Length) where E : unmanaged
{
    /// <summary>The argument of an <c>ArrayView&lt;E&gt;</c> kernel parameter.</summary>
    public static implicit operator Arg<ArrayView<E>>(DeviceView<E> view) =>
        new(view.Buffer ?? throw new ArgumentNullException(nameof(view)), view.Length, ViewKind<E>.Instance);
}

/// <summary>
/// The argument of a kernel parameter of type <typeparamref name="T"/>: a value of that type, or (for
/// <c>ArrayView&lt;E&gt;</c>) a <see cref="DeviceView{E}"/> that each host turns into its own form of a device array.
/// </summary>
public readonly struct Arg<T> where T : struct
{
    /// <summary>The value of a by-value argument.</summary>
    public T Value { get; }
    /// <summary>The buffer of a view argument; null for a by-value one.</summary>
    public DeviceBuffer? Buffer { get; }
    /// <summary>Elements of a view argument.</summary>
    public long Length { get; }
    /// <summary>The element type of a view argument.</summary>
    public ViewKind? View { get; }

    Arg(T value) { Value = value; Buffer = null; Length = 0; View = null; }

    internal Arg(DeviceBuffer buffer, long length, ViewKind view) { Value = default; Buffer = buffer; Length = length; View = view; }

    /// <summary>A by-value argument.</summary>
    public static implicit operator Arg<T>(T value) => new(value);

    /// <summary>The argument as ILGPU passes it: the value, or the view resolved on <paramref name="runner"/>'s accelerator.</summary>
    public T Resolve(IIlgpuRunner runner) => View is null ? Value : View.Resolve<T>(runner, Buffer!, Length);
}

/// <summary>The element type of a view argument, so hosts can resolve it without reflection.</summary>
public abstract class ViewKind
{
    /// <summary>Bytes per element.</summary>
    public abstract int ElementSize { get; }
    /// <summary>The element type's name (for messages).</summary>
    public abstract string ElementName { get; }
    /// <summary>The ILGPU view of <paramref name="length"/> elements of <paramref name="buffer"/>, as <typeparamref name="T"/> (which is that view's type).</summary>
    public abstract T Resolve<T>(IIlgpuRunner runner, DeviceBuffer buffer, long length) where T : struct;
}

/// <summary>The <see cref="ViewKind"/> of element type <typeparamref name="E"/>.</summary>
public sealed class ViewKind<E> : ViewKind where E : unmanaged
{
    /// <summary>The one instance.</summary>
    public static ViewKind<E> Instance { get; } = new();
    ViewKind() { }

    /// <inheritdoc/>
    public override int ElementSize => Unsafe.SizeOf<E>();
    /// <inheritdoc/>
    public override string ElementName => typeof(E).Name;

    /// <inheritdoc/>
    public override T Resolve<T>(IIlgpuRunner runner, DeviceBuffer buffer, long length)
    {
        // Arg<ArrayView<E>> is the only Arg that carries a ViewKind<E>, so T is ArrayView<E> here.
        var view = runner.View<E>(buffer, length);
        return Unsafe.As<ArrayView<E>, T>(ref view);
    }
}

/// <summary>An ILGPU accelerator as a kernel host: compiles typed kernels (once, cached) and views its buffers.</summary>
public interface IIlgpuRunner
{
    /// <summary>The stream launches go to.</summary>
    AcceleratorStream Stream { get; }
    /// <summary>The launcher of <paramref name="kernel"/>, compiled by <paramref name="compile"/> on first use and cached.</summary>
    TLauncher Load<TLauncher>(GpuKernel kernel, Func<Accelerator, TLauncher> compile) where TLauncher : Delegate;
    /// <summary>The first <paramref name="length"/> elements of <paramref name="buffer"/> as an ILGPU view.</summary>
    ArrayView<E> View<E>(DeviceBuffer buffer, long length) where E : unmanaged;
}

/// <summary>Collects one launch's arguments for a host that sets them one by one (an OpenCL driver), then launches.</summary>
public interface IArgumentBinder
{
    /// <summary>Adds the next argument.</summary>
    void Add<T>(in Arg<T> argument) where T : struct;
    /// <summary>Launches an implicitly grouped kernel over <paramref name="extent"/> threads.</summary>
    void Launch(int extent);
    /// <summary>Launches an explicitly grouped kernel.</summary>
    void Launch(Index3D grid, Index3D group);
}

/// <summary>Where kernels run: an ILGPU accelerator (<see cref="Ilgpu"/>) or a driver that binds arguments itself.</summary>
public interface IKernelHost
{
    /// <summary>The ILGPU accelerator, or null for a host that takes arguments through <see cref="Bind"/>.</summary>
    IIlgpuRunner? Ilgpu { get; }
    /// <summary>True when warp-shuffle kernels can run.</summary>
    bool SupportsWarp { get; }
    /// <summary>Starts a launch of <paramref name="kernel"/> on a host without <see cref="Ilgpu"/>.</summary>
    IArgumentBinder Bind(GpuKernel kernel);
    /// <summary>Compiles <paramref name="kernel"/> on a host without <see cref="Ilgpu"/> (or finds it in the cache).</summary>
    void Build(GpuKernel kernel);
}

/// <summary>
/// A GPU kernel: a C# method ILGPU compiles, under a stable name. The typed subclasses (<c>Kernel&lt;T1, ..&gt;</c>
/// for one thread per element, <c>GroupKernel&lt;T1, ..&gt;</c> for explicit thread groups) launch it with arguments the
/// compiler checks against its parameters.
/// </summary>
public abstract class GpuKernel
{
    /// <summary>Creates a kernel named <paramref name="name"/> (family.kernel.dtype).</summary>
    /// <exception cref="ArgumentException">The name is empty.</exception>
    protected GpuKernel(string name, bool grouped, bool needsWarp)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
        Grouped = grouped;
        NeedsWarp = needsWarp;
    }

    /// <summary>Stable name, family.kernel.dtype (file names of emitted code).</summary>
    public string Name { get; }
    /// <summary>The op family: the name's first part.</summary>
    public string Family => Name[..Math.Max(Name.IndexOf('.'), 0)];
    /// <summary>True for explicitly grouped kernels (shared memory, barriers); false for one thread per element.</summary>
    public bool Grouped { get; }
    /// <summary>True when the kernel uses warp shuffles (hosts without them run a shared-memory twin).</summary>
    public bool NeedsWarp { get; }
    /// <summary>The kernel method.</summary>
    public abstract Delegate Body { get; }

    /// <summary>Compiles the kernel for <paramref name="host"/> (or finds it in the cache) without launching it.</summary>
    /// <exception cref="NotSupportedException">The host cannot run it; the message says why.</exception>
    public void Prepare(IKernelHost host)
    {
        if (NeedsWarp && !host.SupportsWarp) throw new NotSupportedException($"kernel {Name} needs warp shuffles; this device runs the shared-memory twin");
        if (host.Ilgpu is { } r) Load(r); else host.Build(this);
    }

    /// <summary>Compiles the kernel on an ILGPU accelerator.</summary>
    protected abstract void Load(IIlgpuRunner runner);

    /// <inheritdoc/>
    public override string ToString() => Name;
}
