using System.Collections.Concurrent;
using System.Reflection;
using Kiln.Backends;
using Kiln.Tests.TestKit;
using Xunit;
using FsCheck.Fluent;
using G = FsCheck.Fluent.Gen;

namespace Kiln.Tests;

/// <summary>
/// Each decomposition on every non-CPU device against the CPU backend: the device's backend runs the same float64
/// kernels on the same values (on the host path of ILinalgBackend or in its own kernels), so results, dtypes and error
/// messages must be identical, bit for bit.
/// </summary>
public class DecompositionDeviceTests
{
    public static IEnumerable<object[]> Cases =>
        from d in Devices.All where d != Device.Cpu from dt in new[] { DType.Float32, DType.Float64 } select new object[] { d.ToString(), dt };

    // Small: ILGPU's CPU accelerator simulates every GPU thread of the conversions and checks.
    static FsCheck.Gen<(int[] Batch, int M, int N, int Seed, bool Strided)> MatrixCase =>
        from rank in G.Choose(0, 2)
        from batch in G.ArrayOf(G.Choose(0, 2), rank)
        from m in G.Choose(0, 5)
        from n in G.Choose(0, 5)
        from seed in TensorGen.Seed
        from strided in G.Elements(true, false)
        select (batch, m, n, seed, strided);

    static Tensor Random(int[] shape, int seed) => Tensor.Rand(new Shape(shape), new Generator((ulong)seed), -1, 1, DType.Float64);

    static Tensor Spd(int[] batch, int n, int seed)
    {
        var x = Random([.. batch, n, n], seed);
        return x.MatMul(x.T) + n * Tensor.Eye(n, dtype: DType.Float64);
    }

    // The CPU input and the same values with dtype dt on dev, optionally as a transposed (column-major) view.
    static (Tensor Cpu, Tensor Dev) Pair(Tensor x, DType dt, Device dev, bool strided)
    {
        var cpu = x.To(dt);
        var d = cpu.To(dev);
        return strided ? (cpu.T.Contiguous().T, d.T.Contiguous().T) : (cpu, d);
    }

    static void Same(Tensor cpu, Tensor dev, Device device, string what)
    {
        Assert.Equal(device, dev.Device);
        Assert.Equal(cpu.DType, dev.DType);
        Assert.Equal(cpu.Shape, dev.Shape);
        var expected = cpu.ToDoubleArray();
        var actual = dev.ToDoubleArray();
        int i = Enumerable.Range(0, expected.Length).FirstOrDefault(j => !expected[j].Equals(actual[j]), -1);
        Assert.True(i < 0, $"{what} on {device}: element {i} is {(i < 0 ? 0 : actual[i]):R}, on the CPU {(i < 0 ? 0 : expected[i]):R}");
    }

    [Theory, MemberData(nameof(Cases))]
    public void Eigh_matches_cpu(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, MatrixCase, c =>
        {
            var x = Random([.. c.Batch, c.N, c.N], c.Seed);
            var (a, ad) = Pair(x + x.T, dt, dev, c.Strided);
            var (w, v) = a.Eigh();
            var (wd, vd) = ad.Eigh();
            Same(w, wd, dev, "eigenvalues");
            Same(v, vd, dev, "eigenvectors");
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void Cholesky_and_cholesky_solve_match_cpu(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, from c in MatrixCase from k in G.Choose(0, 3) select (c, k), p =>
        {
            var (c, k) = p;
            var (a, ad) = Pair(Spd(c.Batch, c.N, c.Seed), dt, dev, c.Strided);
            var l = a.Cholesky();
            var ld = ad.Cholesky();
            Same(l, ld, dev, "L");
            var (b, bd) = Pair(Random([.. c.Batch, c.N, k], c.Seed + 1), dt, dev, strided: false);
            Same(l.CholeskySolve(b), ld.CholeskySolve(bd), dev, "cholesky_solve");
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void Solve_matches_cpu(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, from c in MatrixCase from k in G.Choose(0, 3) from vector in G.Elements(true, false) select (c, k, vector), p =>
        {
            var (c, k, vector) = p;
            var (a, ad) = Pair(Random([.. c.Batch, c.N, c.N], c.Seed) + 2.0 * c.N * Tensor.Eye(c.N, dtype: DType.Float64), dt, dev, c.Strided);
            // A 1-D right-hand side broadcasts over A's batch.
            var (b, bd) = Pair(Random(vector ? [c.N] : [.. c.Batch, c.N, k], c.Seed + 1), dt, dev, strided: false);
            Same(a.Solve(b), ad.Solve(bd), dev, "solve");
        });
    }

    [Theory, MemberData(nameof(Cases))]
    public void Qr_and_svd_match_cpu(string device, DType dt)
    {
        var dev = Devices.Parse(device);
        Props.Check(dev, MatrixCase, c =>
        {
            var (a, ad) = Pair(Random([.. c.Batch, c.M, c.N], c.Seed), dt, dev, c.Strided);
            var (q, r) = a.Qr();
            var (qd, rd) = ad.Qr();
            Same(q, qd, dev, "Q");
            Same(r, rd, dev, "R");
            var (u, s, vh) = a.Svd();
            var (ud, sd, vhd) = ad.Svd();
            Same(u, ud, dev, "U");
            Same(s, sd, dev, "S");
            Same(vh, vhd, dev, "Vh");
        });
    }

    public static IEnumerable<object[]> OtherDevices => Devices.All.Where(d => d != Device.Cpu).Select(d => new object[] { d.ToString() });

    [Theory, MemberData(nameof(OtherDevices))]
    public void Errors_name_the_same_matrix_and_element_as_on_cpu(string device)
    {
        var dev = Devices.Parse(device);
        void SameError<TException>(Tensor a, Func<Tensor, object> op) where TException : Exception
        {
            var expected = Assert.Throws<TException>(() => op(a)).Message;
            Assert.Equal(expected, Assert.Throws<TException>(() => op(a.To(dev))).Message);
        }
        // Matrix 1 of each batch is the bad one, so the index must come back from the backend.
        var eye = Tensor.Eye(3, dtype: DType.Float64);
        var nonSym = Tensor.Stack([eye, Tensor.FromArray(new[,] { { 2.0, 1, 0 }, { 0, 2, 0 }, { 0, 0, 1 } })]);
        SameError<ArgumentException>(nonSym, a => a.Eigh());
        SameError<ArgumentException>(nonSym.To(DType.Float32), a => a.Cholesky());
        var nan = Tensor.Stack([eye, Tensor.FromArray(new[,] { { 1.0, 0, 0 }, { 0, double.PositiveInfinity, 0 }, { 0, 0, double.NaN } })]);
        SameError<ArgumentException>(nan, a => a.Eigh());
        SameError<ArgumentException>(nan, a => a.Svd());
        var indefinite = Tensor.Stack([eye, Tensor.FromArray(new[,] { { 1.0, 2, 0 }, { 2, 1, 0 }, { 0, 0, 1 } })]);
        SameError<ArgumentException>(indefinite, a => a.Cholesky());
        var singular = Tensor.Stack([eye, Tensor.FromArray(new[,] { { 1.0, 2, 0 }, { 3, 6, 0 }, { 0, 0, 1 } })]);
        SameError<ArgumentException>(singular, a => a.Solve(Tensor.Ones(new Shape(3), DType.Float64).To(a.Device)));
        var zeroDiagonal = Tensor.Stack([eye, Tensor.FromArray(new[,] { { 1.0, 0, 0 }, { 0, 1, 0 }, { 0, 0, 0 } })]);
        SameError<ArgumentException>(zeroDiagonal, a => a.CholeskySolve(Tensor.Ones(new Shape(2, 3, 1), DType.Float64).To(a.Device)));
    }
}

/// <summary>
/// The decompositions reach the device through its backend's <see cref="ILinalgBackend"/> members: a counting proxy
/// registered in front of ILGPU's CPU accelerator must see each of them. Runs alone, since it swaps a registered backend.
/// </summary>
[Collection("ilgpu-exclusive")]
public class DecompositionDispatchTests
{
    public class Counting : DispatchProxy
    {
        public IBackend Inner { get; set; } = null!;
        public ConcurrentDictionary<string, int> Calls { get; } = new();

        protected override object? Invoke(MethodInfo? method, object?[]? args)
        {
            Calls.AddOrUpdate(method!.Name, 1, (_, n) => n + 1);
            try { return method.Invoke(Inner, args); }
            catch (TargetInvocationException e) when (e.InnerException is not null) { throw e.InnerException; }
        }
    }

    [Fact]
    public void Every_decomposition_calls_the_backend()
    {
        var dev = Devices.All.First(d => d.Kind == DeviceKind.IlgpuCpu);
        var inner = dev.Backend;
        var proxy = DispatchProxy.Create<IBackend, Counting>();
        var counting = (Counting)(object)proxy;
        counting.Inner = inner;
        BackendRegistry.Register(dev, proxy);
        try
        {
            var x = Tensor.Rand(new Shape(3, 3), new Generator(1), -1, 1, DType.Float64).To(dev);
            var spd = x.MatMul(x.T) + 3.0 * Tensor.Eye(3, dtype: DType.Float64, device: dev);
            spd.Eigh();
            spd.Cholesky().CholeskySolve(x);
            spd.Solve(x);
            x.Qr();
            x.Svd();
        }
        finally { BackendRegistry.Register(dev, inner); }
        foreach (var name in new[] { "Eigh", "Cholesky", "CholeskySolve", "LuFactor", "LuSolve", "Qr", "Svd" })
            Assert.True(counting.Calls.TryGetValue(name, out int n) && n == 1, $"{name} was called {n} times through the backend, not once");
    }
}
