using Xunit;

namespace Kiln.Tests;

/// <summary>
/// <see cref="TensorScope"/> under async/await and threads: the measured failures of issue #19 (concurrent tasks
/// disposing each other's tensors, "Collection was modified" from Dispose, a scope disposed on another thread holding every
/// later tensor) as regression tests, with nested scopes and Keep across awaits; and <see cref="Autograd.NoGrad"/>, which
/// flows the same way.
/// </summary>
public class ScopeTests
{
    // The host arrays of freed tensors go back to a pool for reuse: an array ToArray hands out must not be one of them,
    // or the next tensor of that length overwrites the caller's values (the digits sample's concurrent requests did).
    [Theory]
    [InlineData(100)]
    [InlineData(5000)]
    public void Arrays_that_ToArray_returns_stay_the_callers_after_their_scope_ends(int length)
    {
        float[] kept;
        double[] keptDouble;
        using (Tensor.Scope())
        {
            kept = Tensor.Full([length], 1.0).ToArray<float>();
            keptDouble = Tensor.Full([length], 1.0, DType.Float64).ToDoubleArray();
        }
        for (int i = 0; i < 50; i++)
            using (Tensor.Scope()) { Tensor.Full([length], 2.0); Tensor.Full([length], 2.0, DType.Float64); }
        Assert.All(kept, v => Assert.Equal(1f, v));
        Assert.All(keptDouble, v => Assert.Equal(1.0, v));
    }

    [Fact]
    public async Task Concurrent_tasks_with_their_own_scopes_never_dispose_each_others_tensors()
    {
        const int tasks = 200;
        var intermediates = new Tensor[tasks][];
        var results = await Task.WhenAll(Enumerable.Range(0, tasks).Select(async i =>
        {
            await Task.Yield();
            using var scope = Tensor.Scope();
            var x = Tensor.Full(new Shape(16), i);
            await Task.Delay(i % 7);
            var y = (x * 2.0 + 1.0).Sum();
            await Task.Yield();
            intermediates[i] = [x, y];
            return scope.Keep(y * 1.0).Item();
        }));
        for (int i = 0; i < tasks; i++)
        {
            Assert.Equal(16 * (2.0 * i + 1), results[i]);
            Assert.All(intermediates[i], t => Assert.True(t.Storage.IsDisposed, $"task {i}: an intermediate outlived its scope"));
        }
    }

    [Fact]
    public async Task A_scope_disposed_on_another_thread_stops_tracking_where_it_was_opened()
    {
        var scope = Tensor.Scope();
        var inside = Tensor.Ones(4);
        await Task.Run(scope.Dispose);
        Assert.True(inside.Storage.IsDisposed);
        // This flow still has the scope as its current one; it must neither hold nor dispose what comes next.
        var later = Enumerable.Range(0, 100).Select(_ => Tensor.Ones(4)).ToArray();
        Assert.Equal(0, scope.TrackedCount);
        scope.Dispose();
        Assert.All(later, t => Assert.False(t.Storage.IsDisposed));
        using (var next = Tensor.Scope())
        {
            var t = Tensor.Ones(2);
            Assert.Equal(1, next.TrackedCount);
        }
    }

    [Fact]
    public async Task Nested_scopes_keep_across_awaits_and_the_outer_scope_disposes_what_was_kept()
    {
        Tensor kept, dropped, outerOwn;
        using (var outer = Tensor.Scope())
        {
            outerOwn = Tensor.Ones(3);
            using (var inner = Tensor.Scope())
            {
                await Task.Yield();
                dropped = Tensor.Ones(3) * 2.0;
                await Task.Delay(1);
                kept = inner.Keep(dropped + 1.0);
            }
            Assert.True(dropped.Storage.IsDisposed);
            Assert.False(kept.Storage.IsDisposed);
            Assert.Equal(new[] { 3.0, 3, 3 }, kept.ToDoubleArray());
            Assert.False(outerOwn.Storage.IsDisposed);
        }
        Assert.True(kept.Storage.IsDisposed);
        Assert.True(outerOwn.Storage.IsDisposed);
    }

    [Fact]
    public async Task Tasks_started_inside_a_scope_track_into_it_concurrently()
    {
        Tensor[][] made;
        using (var scope = Tensor.Scope())
        {
            made = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => Enumerable.Range(0, 500).Select(_ => Tensor.Ones(2)).ToArray())));
            Assert.Equal(8 * 500, scope.TrackedCount);
        }
        Assert.All(made.SelectMany(m => m), t => Assert.True(t.Storage.IsDisposed));
    }

    [Fact]
    public async Task Dispose_racing_with_tensor_creation_neither_throws_nor_leaks_a_tracked_storage()
    {
        for (int round = 0; round < 20; round++)
        {
            var scope = Tensor.Scope();
            using var go = new ManualResetEventSlim();
            // The makers inherit the scope (they start inside it) and race its Dispose.
            var makers = Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
            {
                go.Wait();
                for (int k = 0; k < 300; k++) Tensor.Ones(2);
            })).ToArray();
            go.Set();
            scope.Dispose();
            await Task.WhenAll(makers);
            Assert.Equal(0, scope.TrackedCount);
        }
    }

    [Fact]
    public async Task A_NoGrad_scope_stays_across_awaits_and_never_leaks_into_concurrent_tasks()
    {
        const int tasks = 200;
        var x = Tensor.Ones(3).RequiresGrad_();
        // Even tasks record nothing, odd ones record; each checks before and after awaits that resume on other threads,
        // interleaved with the other kind on the same pool threads.
        var seen = await Task.WhenAll(Enumerable.Range(0, tasks).Select(i => Task.Run(async () =>
        {
            var records = new List<bool>();
            using (i % 2 == 0 ? Autograd.NoGrad() : null)
                for (int k = 0; k < 4; k++)
                {
                    records.Add((x * 2.0).RequiresGrad);
                    if (k % 2 == 0) await Task.Yield(); else await Task.Delay(i % 3);
                }
            records.Add((x * 2.0).RequiresGrad);
            return records;
        })));
        for (int i = 0; i < tasks; i++)
        {
            bool[] expected = i % 2 == 0 ? [false, false, false, false, true] : [true, true, true, true, true];
            Assert.True(expected.SequenceEqual(seen[i]), $"task {i}: recording was [{string.Join(", ", seen[i])}]");
        }
        Assert.True(Autograd.IsEnabled);
    }

    [Fact]
    public async Task Tasks_started_inside_NoGrad_inherit_it_and_a_NoGrad_disposed_elsewhere_ends_everywhere()
    {
        using (Autograd.NoGrad())
        {
            Assert.Equal(new[] { false, false }, await Task.WhenAll(Task.Run(() => Autograd.IsEnabled), Task.Run(async () => { await Task.Yield(); return Autograd.IsEnabled; })));
            // A nested scope disposed on another thread leaves the enclosing one in force.
            var nested = Autograd.NoGrad();
            await Task.Run(nested.Dispose);
            Assert.False(Autograd.IsEnabled);
        }
        Assert.True(Autograd.IsEnabled);

        // Disposed on another thread, where it is not the current scope: it stops covering the flow that opened it.
        var scope = Autograd.NoGrad();
        Assert.False(Autograd.IsEnabled);
        await Task.Run(scope.Dispose);
        Assert.True(Autograd.IsEnabled);
        scope.Dispose();
        Assert.True(Autograd.IsEnabled);
    }

    [Fact]
    public void Nested_NoGrad_scopes_end_in_any_order()
    {
        var outer = Autograd.NoGrad();
        var inner = Autograd.NoGrad();
        inner.Dispose();
        Assert.False(Autograd.IsEnabled);
        inner = Autograd.NoGrad();
        outer.Dispose();
        Assert.False(Autograd.IsEnabled);
        inner.Dispose();
        Assert.True(Autograd.IsEnabled);
    }

    [Fact]
    public void Keep_after_the_scope_ended_is_refused()
    {
        var scope = Tensor.Scope();
        var t = Tensor.Ones(1);
        scope.Dispose();
        Assert.Throws<ObjectDisposedException>(() => scope.Keep(t));
    }
}
