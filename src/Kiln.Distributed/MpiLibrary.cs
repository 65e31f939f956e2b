using System.Runtime.InteropServices;

namespace Kiln.Distributed;

/// <summary>The two MPI application binary interfaces Kiln binds.</summary>
public enum MpiAbi
{
    /// <summary>Open MPI: handles are pointers to exported objects (<c>ompi_mpi_comm_world</c>, ...), MPI_IN_PLACE is 1.</summary>
    OpenMpi,
    /// <summary>MPICH and its derivatives (Intel MPI, MVAPICH): handles are integer constants, MPI_IN_PLACE is -1.</summary>
    Mpich,
}

/// <summary>
/// The MPI C library loaded at run time and the few functions Kiln calls, with the handle conventions of its ABI
/// resolved to pointer-sized values (an MPICH integer handle passed in a 64-bit argument slot reads the same to the
/// callee on x86-64 and AArch64).
/// </summary>
internal sealed unsafe class MpiLibrary
{
    // Sonames tried in order: Open MPI 3-5, then MPICH 3-4 (libmpi.so.12 is MPICH's compatibility name).
    internal static readonly string[] Candidates = ["libmpi.so.40", "libmpi.so.12", "libmpich.so.12", "libmpi.so"];
    /// <summary>Names a library to load in place of the candidates (a path or a soname).</summary>
    public const string LibraryVariable = "KILN_MPI_LIBRARY";

    const int RtldNow = 2, RtldGlobal = 0x100;
    [DllImport("libc.so.6", EntryPoint = "dlopen")] static extern nint DlOpen(string file, int mode);
    [DllImport("libc.so.6", EntryPoint = "dlerror")] static extern nint DlError();

    public string Path { get; }
    public MpiAbi Abi { get; }
    public nint CommWorld, Float, Double, Byte, Int, Sum, ErrorsReturn, InPlace, StatusIgnore;

    public readonly delegate* unmanaged<int*, nint, int, int*, int> InitThread;
    public readonly delegate* unmanaged<int*, int> Initialized, Finalized;
    public readonly delegate* unmanaged<int> Finalize;
    public readonly delegate* unmanaged<nint, int*, int> CommRank, CommSize;
    public readonly delegate* unmanaged<nint, nint, int> CommSetErrhandler;
    public readonly delegate* unmanaged<int, byte*, int*, int> ErrorString;
    public readonly delegate* unmanaged<nint, int, int> Abort;
    public readonly delegate* unmanaged<nint, long*, int> Ibarrier;
    public readonly delegate* unmanaged<void*, int, nint, int, nint, long*, int> Ibcast;
    public readonly delegate* unmanaged<void*, void*, int, nint, nint, nint, long*, int> IreduceScatterBlock;
    public readonly delegate* unmanaged<void*, int, nint, void*, int, nint, nint, long*, int> Iallgather;
    public readonly delegate* unmanaged<void*, int, nint, int, int, nint, long*, int> Isend, Irecv;
    public readonly delegate* unmanaged<long*, int*, nint, int> Test;

    MpiLibrary(string path, nint handle)
    {
        Path = path;
        nint F(string name) => NativeLibrary.TryGetExport(handle, name, out var f) ? f
            : throw new DistributedException($"mpi: {path} does not export {name}; it is not an MPI-3 library (need Open MPI >= 3 or MPICH >= 3)");
        Abi = NativeLibrary.TryGetExport(handle, "ompi_mpi_comm_world", out _) ? MpiAbi.OpenMpi : MpiAbi.Mpich;
        if (Abi == MpiAbi.OpenMpi)
        {
            // Open MPI's predefined handles are the addresses of its exported objects.
            (CommWorld, Float, Double, Byte, Int) = (F("ompi_mpi_comm_world"), F("ompi_mpi_float"), F("ompi_mpi_double"), F("ompi_mpi_byte"), F("ompi_mpi_int"));
            (Sum, ErrorsReturn, InPlace, StatusIgnore) = (F("ompi_mpi_op_sum"), F("ompi_mpi_errors_return"), 1, 0);
        }
        else
        {
            // MPICH's mpi.h constants.
            (CommWorld, Float, Double, Byte, Int) = (0x44000000, 0x4c00040a, 0x4c00080b, 0x4c00010d, 0x4c000405);
            (Sum, ErrorsReturn, InPlace, StatusIgnore) = (0x58000003, 0x54000001, -1, 1);
        }
        InitThread = (delegate* unmanaged<int*, nint, int, int*, int>)F("MPI_Init_thread");
        Initialized = (delegate* unmanaged<int*, int>)F("MPI_Initialized");
        Finalized = (delegate* unmanaged<int*, int>)F("MPI_Finalized");
        Finalize = (delegate* unmanaged<int>)F("MPI_Finalize");
        CommRank = (delegate* unmanaged<nint, int*, int>)F("MPI_Comm_rank");
        CommSize = (delegate* unmanaged<nint, int*, int>)F("MPI_Comm_size");
        CommSetErrhandler = (delegate* unmanaged<nint, nint, int>)F("MPI_Comm_set_errhandler");
        ErrorString = (delegate* unmanaged<int, byte*, int*, int>)F("MPI_Error_string");
        Abort = (delegate* unmanaged<nint, int, int>)F("MPI_Abort");
        Ibarrier = (delegate* unmanaged<nint, long*, int>)F("MPI_Ibarrier");
        Ibcast = (delegate* unmanaged<void*, int, nint, int, nint, long*, int>)F("MPI_Ibcast");
        IreduceScatterBlock = (delegate* unmanaged<void*, void*, int, nint, nint, nint, long*, int>)F("MPI_Ireduce_scatter_block");
        Iallgather = (delegate* unmanaged<void*, int, nint, void*, int, nint, nint, long*, int>)F("MPI_Iallgather");
        Isend = (delegate* unmanaged<void*, int, nint, int, int, nint, long*, int>)F("MPI_Isend");
        Irecv = (delegate* unmanaged<void*, int, nint, int, int, nint, long*, int>)F("MPI_Irecv");
        Test = (delegate* unmanaged<long*, int*, nint, int>)F("MPI_Test");
    }

    static MpiLibrary? _loaded;
    static readonly Lock Gate = new();

    /// <summary>Loads the MPI library once per process: <see cref="LibraryVariable"/> if set, else the first candidate found.</summary>
    /// <exception cref="DistributedException">No MPI library loads; the message lists what was tried and how to install one.</exception>
    public static MpiLibrary Load()
    {
        lock (Gate) return _loaded ??= Open(Environment.GetEnvironmentVariable(LibraryVariable) is { Length: > 0 } v ? [v] : Candidates);
    }

    internal static MpiLibrary Open(string[] names)
    {
        if (!OperatingSystem.IsLinux())
            throw new DistributedException($"mpi: Kiln loads Open MPI or MPICH on Linux only; this is {RuntimeInformation.OSDescription}");
        var tried = new List<string>();
        foreach (var name in names)
        {
            // RTLD_GLOBAL: Open MPI's plugins resolve libmpi's symbols from the global namespace.
            nint h = DlOpen(name, RtldNow | RtldGlobal);
            if (h != 0) return new MpiLibrary(name, h);
            var err = DlError();
            tried.Add(err != 0 ? Marshal.PtrToStringUTF8(err)! : name);
        }
        throw new DistributedException(
            $"mpi: no MPI library found (tried {string.Join("; ", tried)}). Install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi3) " +
            $"or MPICH (apt-get install mpich), or set {LibraryVariable} to the path of libmpi.so");
    }

    /// <summary>MPI's text for an error code.</summary>
    public string Describe(int code)
    {
        var buf = stackalloc byte[1024 + 1];
        int len = 0;
        return ErrorString(code, buf, &len) == 0 ? System.Text.Encoding.ASCII.GetString(buf, Math.Clamp(len, 0, 1024)) : $"MPI error code {code}";
    }
}
