using Kiln.NN;
using Xunit;

namespace Kiln.Tests.NN;

/// <summary>The data loader: batching, drop-last, shuffling that is a permutation and deterministic per seed, prefetch that gives the same batches, collation, errors.</summary>
public class DataLoaderTests
{
    static Tensor Column(int n) => Tensor.Arange(0, n, dtype: DType.Float64);

    [Theory]
    [InlineData(10, 3, false, 4)]
    [InlineData(10, 3, true, 3)]
    [InlineData(9, 3, true, 3)]
    [InlineData(0, 4, false, 0)]
    public void Batches_cover_the_rows_in_order(int n, int batch, bool dropLast, int batches)
    {
        var x = Column(n);
        var y = (Column(n) * 10.0).Reshape(n, 1);
        var loader = DataLoader.FromTensors([x, y], batch, dropLast: dropLast);
        Assert.Equal(batches, loader.Count);
        var seen = loader.ToList();
        Assert.Equal(batches, seen.Count);
        var rows = seen.SelectMany(b => b[0].ToDoubleArray()).ToArray();
        Assert.Equal(Enumerable.Range(0, dropLast ? n / batch * batch : n).Select(i => (double)i), rows);
        foreach (var b in seen) Assert.Equal(b[0].ToDoubleArray().Select(v => v * 10), b[1].ToDoubleArray());
    }

    [Fact]
    public void Shuffled_epochs_are_permutations_that_differ_and_repeat_for_a_seed()
    {
        List<double[]> Epochs(ulong seed, int prefetch)
        {
            var loader = DataLoader.FromTensors([Column(50)], 7, shuffle: true, generator: new Generator(seed), prefetch: prefetch);
            return [.. Enumerable.Range(0, 3).Select(_ => loader.SelectMany(b => b[0].ToDoubleArray()).ToArray())];
        }
        var a = Epochs(5, 0);
        foreach (var e in a) Assert.Equal(Enumerable.Range(0, 50).Select(i => (double)i), e.Order());
        Assert.NotEqual(a[0], a[1]);
        Assert.NotEqual(Enumerable.Range(0, 50).Select(i => (double)i), a[0]);
        Assert.Equal(a, Epochs(5, 0));
        Assert.Equal(a, Epochs(5, 3));
        Assert.NotEqual(a[0], Epochs(6, 0)[0]);
    }

    sealed class Squares(int n) : IDataset<Tensor[]>
    {
        public int Count => n;
        public Tensor[] this[int i] => i == 13 ? throw new InvalidDataException("row 13 is corrupt") : [Tensor.Full(new Shape(2), i), Tensor.Scalar(i * i)];
    }

    [Fact]
    public void A_dataset_is_collated_by_stacking_and_its_errors_surface_with_prefetch()
    {
        var loader = DataLoader.FromDataset(new Squares(12), DataLoader.Stack, 5, prefetch: 2);
        var batches = loader.ToList();
        Assert.Equal(3, batches.Count);
        Assert.Equal(new Shape(5, 2), batches[0][0].Shape);
        Assert.Equal(new[] { 0.0, 1, 4, 9, 16 }, batches[0][1].ToDoubleArray());
        Assert.Equal(new Shape(2), batches[2][1].Shape);

        var broken = DataLoader.FromDataset(new Squares(20), DataLoader.Stack, 5, prefetch: 2);
        var e = Assert.Throws<InvalidOperationException>(() => broken.ToList());
        Assert.IsType<InvalidDataException>(e.InnerException);
        Assert.Contains("row 13 is corrupt", e.Message);
    }

    [Fact]
    public void Leaving_a_prefetched_epoch_early_stops_the_worker()
    {
        var loader = DataLoader.FromTensors([Column(1000)], 1, prefetch: 4);
        using (var it = loader.GetEnumerator())
            for (int i = 0; i < 3; i++) Assert.True(it.MoveNext());
        Assert.Equal(1000, loader.Count());
    }

    [Fact]
    public void Bad_arguments_are_named()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => DataLoader.FromTensors([Column(4)], 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => DataLoader.FromTensors([Column(4)], 2, prefetch: -1));
        var e = Assert.Throws<ArgumentException>(() => DataLoader.FromTensors([Column(4), Column(5)], 2));
        Assert.Contains("column 1", e.Message);
        Assert.Throws<ArgumentException>(() => DataLoader.FromTensors([Column(4)], 2, generator: new Generator(1)));
        Assert.Throws<ArgumentException>(() => DataLoader.FromTensors([], 2));
    }
}
