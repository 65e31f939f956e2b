using Kiln.Kernels;

namespace Kiln.Ops;

/// <summary>
/// The resample family's definitions: interpolate in each mode (nearest and nearest-exact over 1d to 3d, linear as
/// linear/bilinear/trilinear by rank, bicubic over 2d), forward and backward, on [N, C, *spatial] with an output size or
/// a scale factor and align_corners drawn from each case's seed; grid_sample forward and backward (input and grid) with
/// the mode, padding, align_corners and a grid reaching past [-1, 1] drawn the same way; roi_align forward and backward
/// with random boxes (some partly outside the input), sampling ratio, scale and alignment.
/// </summary>
public static class ResampleOps
{
    /// <summary>Every definition of the family.</summary>
    public static IReadOnlyList<OpDefinition> All { get; } =
    [
        .. new[] { ResampleMode.Nearest, ResampleMode.NearestExact, ResampleMode.Linear, ResampleMode.Cubic }
            .SelectMany(m => new OpDefinition[] { new InterpolateDefinition(m, backward: false), new InterpolateDefinition(m, backward: true) }),
        new GridSampleDefinition(backward: false),
        new GridSampleDefinition(backward: true),
        new RoiAlignDefinition(backward: false),
        new RoiAlignDefinition(backward: true),
    ];

    static string NameOf(ResampleMode m) => m switch
    {
        ResampleMode.Nearest => "nearest", ResampleMode.NearestExact => "nearest_exact", ResampleMode.Linear => "linear", _ => "bicubic",
    };

    sealed class InterpolateDefinition(ResampleMode mode, bool backward) : OpDefinition(
        $"resample.interpolate_{NameOf(mode)}{(backward ? "_backward" : "")}", "resample", DTypeLists.Floats, Domain.Default,
        mode is ResampleMode.Nearest or ResampleMode.NearestExact && !backward ? Tolerance.Exact : new Tolerance(4))
    {
        public override int MinRank => mode == ResampleMode.Cubic ? 4 : 3;
        public override int MaxRank => mode == ResampleMode.Cubic ? 4 : 5;
        bool Nearest => mode is ResampleMode.Nearest or ResampleMode.NearestExact;

        InterpolateMode Mode(int n) => mode switch
        {
            ResampleMode.Nearest => InterpolateMode.Nearest,
            ResampleMode.NearestExact => InterpolateMode.NearestExact,
            ResampleMode.Cubic => InterpolateMode.Bicubic,
            _ => n == 1 ? InterpolateMode.Linear : n == 2 ? InterpolateMode.Bilinear : InterpolateMode.Trilinear,
        };

        // One interpolation drawn from a seed for an input shape: how to run it, its reference geometry, output shape
        // and the terms an element sums (the error budget's multiplier).
        (Func<Tensor, Tensor> Run, ResampleArgs Args, int[] OutShape, double Terms) Problem(int[] shape, ulong seed)
        {
            var inS = shape[2..];
            int n = inS.Length;
            var rng = new Random((int)(seed % int.MaxValue));
            bool align = !Nearest && rng.Next(2) == 1;
            double[] choices = [0.5, 0.7, 1, 1.5, 2, 7.0 / 3, 3];
            double[]? factors = rng.Next(2) == 0 ? [.. inS.Select(e => choices[rng.Next(choices.Length)])] : null;
            if (factors is not null && inS.Select((e, i) => Math.Floor(e * factors[i])).Any(o => o < 1)) factors = null;
            int[] outS = factors is null ? [.. inS.Select(e => rng.Next(1, 2 * Math.Max(e, 1) + 3))] : [.. inS.Select((e, i) => (int)Math.Floor(e * factors[i]))];
            Tensor Run(Tensor t) => factors is null ? t.Interpolate(outS, null, Mode(n), align) : t.Interpolate(null, factors, Mode(n), align);
            int At(int[] v, int dim) => dim - (3 - n) is var i && i >= 0 ? v[i] : 1;
            double Factor(int dim) => factors is not null && dim - (3 - n) is var i && i >= 0 ? factors[i] : 0;
            var a = new ResampleArgs
            {
                Planes = shape[0] * shape[1], ID = At(inS, 0), IH = At(inS, 1), IW = At(inS, 2), OD = At(outS, 0), OH = At(outS, 1), OW = At(outS, 2),
                Mode = (int)mode, AlignCorners = align ? 1 : 0, Active = (1 << n) - 1, FactorD = Factor(0), FactorH = Factor(1), FactorW = Factor(2),
            };
            int taps = mode switch { ResampleMode.Linear => 2, ResampleMode.Cubic => 4, _ => 1 };
            // A gradient element sums the taps of every output that reaches it: about out / in + taps per dim.
            double extra = backward ? inS.Select((e, i) => (double)outS[i] / Math.Max(e, 1) + taps).Aggregate(1.0, (p, q) => p * q) : Math.Pow(taps, n);
            return (Run, a, [shape[0], shape[1], .. outS], extra);
        }

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var (run, a, outShape, extra) = Problem(c.Shape, c.Seed);
            if (c.Shape[2..].Contains(0))
            {
                try { run(x); }
                catch (ArgumentException) { return CheckResult.Ok; }
                return new CheckResult(double.PositiveInfinity, false, $"{Name}: an empty spatial dim was accepted");
            }
            var (rtol, atol) = Tolerance.For(dtype, extra);
            if (!backward)
            {
                var y = run(x);
                if (!y.Shape.ToArray().SequenceEqual(outShape)) return new CheckResult(double.PositiveInfinity, false, $"{Name}: shape {y.Shape}, expected [{string.Join(", ", outShape)}]");
                var expected = Reference.Resample(x.Contiguous().ToDoubleArray(), a);
                return Tolerance.Scale == 0 ? CheckResult.Equal(expected, y.ToDoubleArray(), Name) : CheckResult.Compare(expected, y.ToDoubleArray(), rtol, atol, Name, dtype);
            }
            x.RequiresGrad_();
            var g = Input(outShape, InputView.Contiguous, c.Seed + 1, dtype, device, Domain.Default);
            run(x).Backward(g);
            return CheckResult.Compare(Reference.ResampleBackward(g.ToDoubleArray(), a), x.Grad!.ToDoubleArray(), rtol, atol, Name, dtype);
        }

        /// <summary>
        /// Special values planted in the input (forward) or the upstream gradient (backward) of a 2-d resize of
        /// [2, 2, 4, 5], against the float64 reference, which multiplies every tap's input by its weight as PyTorch does,
        /// so an infinity beside a zero weight gives NaN.
        /// </summary>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            int[] shape = [2, 2, 4, 5];
            const ulong seed = 12;
            var (run, a, outShape, extra) = Problem(shape, seed);
            var xd = Input(shape, InputView.Contiguous, seed, dtype, Device.Cpu, Domain).ToDoubleArray();
            if (!backward)
                return SpecialValues.Planted(this, device, dtype, relaxed, xd, shape, v => Reference.Resample(v, a), run, extra);
            var x0 = Tensor.FromArray(xd, new Shape(shape)).To(dtype).To(device);
            var gd = Input(outShape, InputView.Contiguous, seed + 1, dtype, Device.Cpu, Domain).ToDoubleArray();
            return SpecialValues.Planted(this, device, dtype, relaxed, gd, outShape, g => Reference.ResampleBackward(g, a), g =>
            {
                var x = x0.Detach().RequiresGrad_();
                run(x).Backward(g);
                return x.Grad!;
            }, extra);
        }
    }

    sealed class GridSampleDefinition(bool backward) : OpDefinition(
        backward ? "resample.grid_sample_backward" : "resample.grid_sample", "resample", DTypeLists.Floats, Domain.Default, new Tolerance(4))
    {
        public override int MinRank => 4;
        public override int MaxRank => 4;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var rng = new Random((int)(c.Seed % int.MaxValue));
            int n = c.Shape[0], oh = rng.Next(0, 6), ow = rng.Next(1, 6);
            var mode = (GridSampleMode)rng.Next(2);
            var padding = (GridSamplePadding)rng.Next(3);
            bool align = rng.Next(2) == 1;
            var grid = Input([n, oh, ow, 2], (InputView)rng.Next(4), c.Seed + 2, dtype, device, new Domain(-1.3, 1.3));
            if (c.Shape[2] == 0 || c.Shape[3] == 0)
            {
                try { x.GridSample(grid, mode, padding, align); }
                catch (ArgumentException) { return CheckResult.Ok; }
                return new CheckResult(double.PositiveInfinity, false, $"{Name}: an empty spatial dim was accepted");
            }
            var a = new GridSampleArgs
            {
                N = n, C = c.Shape[1], IH = c.Shape[2], IW = c.Shape[3], OH = oh, OW = ow,
                Mode = (int)mode, Padding = (int)padding, AlignCorners = align ? 1 : 0,
            };
            double[] xd = x.Contiguous().ToDoubleArray(), gd = grid.Contiguous().ToDoubleArray();
            if (!backward)
            {
                var (rtol, atol) = Tolerance.For(dtype, Math.Max(a.IH, a.IW));
                return CheckResult.Compare(Reference.GridSample(xd, gd, a), x.GridSample(grid, mode, padding, align).ToDoubleArray(), rtol, atol, Name, dtype);
            }
            x.RequiresGrad_();
            grid.RequiresGrad_();
            var g = Input([n, a.C, oh, ow], InputView.Contiguous, c.Seed + 1, dtype, device, Domain.Default);
            x.GridSample(grid, mode, padding, align).Backward(g);
            var (dx, dgrid) = Reference.GridSampleBackward(g.ToDoubleArray(), xd, gd, a);
            // A pixel may gather every grid point; a grid gradient sums 4 terms per channel, scaled by up to half the extent.
            var (rx, ax) = Tolerance.For(dtype, Math.Max(a.IH, a.IW) * Math.Max(1, oh * ow));
            var (rg, ag) = Tolerance.For(dtype, Math.Max(a.IH, a.IW) * 4.0 * Math.Max(1, a.C));
            return CheckResult.Compare(dx, x.Grad!.ToDoubleArray(), rx, ax, Name + " input", dtype)
                .Merge(CheckResult.Compare(dgrid, grid.Grad!.ToDoubleArray(), rg, ag, Name + " grid", dtype));
        }

        /// <summary>
        /// Special values planted in the input (forward) or the upstream gradient (backward: the input's and the grid's
        /// gradients together) of a bilinear, zero-padded sampling whose grid reaches past the input, against the float64
        /// reference.
        /// </summary>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            int[] shape = [2, 2, 4, 5];
            var a = new GridSampleArgs { N = 2, C = 2, IH = 4, IW = 5, OH = 3, OW = 4, Mode = (int)GridSampleMode.Bilinear, Padding = (int)GridSamplePadding.Zeros };
            var gd = Input([2, 3, 4, 2], InputView.Contiguous, 13, dtype, Device.Cpu, new Domain(-1.3, 1.3)).ToDoubleArray();
            var grid0 = Tensor.FromArray(gd, new Shape(2, 3, 4, 2)).To(dtype).To(device);
            var xd = Input(shape, InputView.Contiguous, 14, dtype, Device.Cpu, Domain).ToDoubleArray();
            if (!backward)
                return SpecialValues.Planted(this, device, dtype, relaxed, xd, shape, v => Reference.GridSample(v, gd, a),
                    x => x.GridSample(grid0, GridSampleMode.Bilinear, GridSamplePadding.Zeros, false), Math.Max(a.IH, a.IW));
            int[] outShape = [2, 2, 3, 4];
            var x0 = Tensor.FromArray(xd, new Shape(shape)).To(dtype).To(device);
            var ud = Input(outShape, InputView.Contiguous, 15, dtype, Device.Cpu, Domain).ToDoubleArray();
            // The looser of the two gradients' budgets in Check: a pixel may gather every grid point. The grid's gradient
            // multiplies an upstream value by input differences before scaling (in the input's dtype, as PyTorch does), so
            // a largest normal there overflows: not the reference's to judge.
            return SpecialValues.Planted(this, device, dtype, relaxed, ud, outShape, g =>
            {
                var (dx, dgrid) = Reference.GridSampleBackward(g, xd, gd, a);
                return [.. dx, .. dgrid];
            }, g =>
            {
                var (x, grid) = (x0.Detach().RequiresGrad_(), grid0.Detach().RequiresGrad_());
                x.GridSample(grid, GridSampleMode.Bilinear, GridSamplePadding.Zeros, false).Backward(g);
                return Tensor.Concat([x.Grad!.Reshape(-1), grid.Grad!.Reshape(-1)], 0);
            }, Math.Max(a.IH, a.IW) * a.OH * a.OW, largestNormals: false);
        }
    }

    sealed class RoiAlignDefinition(bool backward) : OpDefinition(
        backward ? "resample.roi_align_backward" : "resample.roi_align", "resample", DTypeLists.Floats, Domain.Default, new Tolerance(4))
    {
        public override int MinRank => 4;
        public override int MaxRank => 4;

        public override CheckResult Check(Device device, DType dtype, OpCase c)
        {
            var x = Input(c, dtype, device);
            var rng = new Random((int)(c.Seed % int.MaxValue));
            int n = c.Shape[0], h = c.Shape[2], w = c.Shape[3], k = n == 0 ? 0 : rng.Next(0, 5);
            int[] output = [rng.Next(1, 4), rng.Next(1, 4)];
            double scale = rng.Next(2) == 0 ? 1 : 0.5;
            int ratio = rng.Next(0, 3);
            bool aligned = rng.Next(2) == 1;
            var bh = new double[k * 5];
            for (int i = 0; i < k; i++)
            {
                // Corners from a little outside the input to past it, in box coordinates (pixels / scale), in either order.
                bh[i * 5] = rng.Next(n);
                for (int j = 1; j < 5; j++) bh[i * 5 + j] = (rng.NextDouble() * ((j % 2 == 1 ? w : h) + 3) - 1.5) / scale;
            }
            var boxes = Tensor.FromArray(bh, new Shape(k, 5)).To(dtype).To(device);
            if (h == 0 || w == 0)
            {
                try { x.RoiAlign(boxes, output, scale, ratio, aligned); }
                catch (ArgumentException) { return CheckResult.Ok; }
                return new CheckResult(double.PositiveInfinity, false, $"{Name}: an empty spatial dim was accepted");
            }
            var a = new RoiAlignArgs { N = n, C = c.Shape[1], H = h, W = w, K = k, PH = output[0], PW = output[1], SamplingRatio = ratio, Aligned = aligned ? 1 : 0, SpatialScale = scale };
            double[] xd = x.Contiguous().ToDoubleArray(), bd = boxes.ToDoubleArray();
            if (!backward)
            {
                var (rtol, atol) = Tolerance.For(dtype, 4);
                return CheckResult.Compare(Reference.RoiAlign(xd, bd, a), x.RoiAlign(boxes, output, scale, ratio, aligned).ToDoubleArray(), rtol, atol, Name, dtype);
            }
            x.RequiresGrad_();
            var g = Input([k, a.C, a.PH, a.PW], InputView.Contiguous, c.Seed + 1, dtype, device, Domain.Default);
            x.RoiAlign(boxes, output, scale, ratio, aligned).Backward(g);
            // A pixel sums the taps of every sample of every bin of every box that reaches it.
            var (rb, ab) = Tolerance.For(dtype, 4.0 * Math.Max(1, k));
            return CheckResult.Compare(Reference.RoiAlignBackward(g.ToDoubleArray(), bd, a), x.Grad!.ToDoubleArray(), rb, ab, Name, dtype);
        }

        /// <summary>
        /// Special values planted in the input (forward) or the upstream gradient (backward) of an alignment of three
        /// boxes, one partly outside the input, against the float64 reference.
        /// </summary>
        public override IReadOnlyList<SpecialClassResult> CheckSpecials(Device device, DType dtype, bool relaxed = false)
        {
            int[] shape = [2, 2, 5, 6];
            double[] bd = [0, 0.5, 0.5, 4, 3, 1, -1, 1, 3.5, 5.5, 1, 2, 0, 5.5, 4.25];
            var boxes = Tensor.FromArray(bd, new Shape(3, 5)).To(dtype).To(device);
            var a = new RoiAlignArgs { N = 2, C = 2, H = 5, W = 6, K = 3, PH = 2, PW = 3, SamplingRatio = 2, Aligned = 1, SpatialScale = 1 };
            Tensor Run(Tensor x) => x.RoiAlign(boxes, [2, 3], 1, 2, true);
            var xd = Input(shape, InputView.Contiguous, 15, dtype, Device.Cpu, Domain).ToDoubleArray();
            // A bin sums its samples before dividing by their count (in the input's dtype, as torchvision does), so a
            // largest normal read by several samples overflows there: not the reference's to judge.
            if (!backward)
                return SpecialValues.Planted(this, device, dtype, relaxed, xd, shape, v => Reference.RoiAlign(v, bd, a), Run, 4, largestNormals: false);
            int[] outShape = [3, 2, 2, 3];
            var x0 = Tensor.FromArray(xd, new Shape(shape)).To(dtype).To(device);
            var gd = Input(outShape, InputView.Contiguous, 16, dtype, Device.Cpu, Domain).ToDoubleArray();
            return SpecialValues.Planted(this, device, dtype, relaxed, gd, outShape, g => Reference.RoiAlignBackward(g, bd, a), g =>
            {
                var x = x0.Detach().RequiresGrad_();
                Run(x).Backward(g);
                return x.Grad!;
            }, 4.0 * 3);
        }
    }
}
