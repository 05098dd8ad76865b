#ifndef STARMD_REFERENCE_GENERATOR_KERNELS_H_
#define STARMD_REFERENCE_GENERATOR_KERNELS_H_

#include "internal/GeneratorKernels.h"
#include "openmm/KernelFactory.h"
#include "openmm/Vec3.h"
#include <torch/script.h>
#include <cstdint>
#include <vector>

namespace StarMD {

/**
 * The jump on the Reference and CPU platforms. The jump talks to the Context only through
 * ContextImpl's public API (positions, velocities, constraints); the Langevin relaxation also uses
 * the constraint algorithm of the Reference platform data (shared by the CPU platform), so that it
 * constrains exactly as OpenMM's LangevinMiddleIntegrator does.
 * Rollout state (the core's KV cache) lives in the loaded TorchScript module; the frame history
 * is kept here to replay it into a larger cache when the cache is full.
 */
class ReferenceIntegrateGeneratorStepKernel : public IntegrateGeneratorStepKernel {
public:
    ReferenceIntegrateGeneratorStepKernel(std::string name, const OpenMM::Platform& platform)
        : IntegrateGeneratorStepKernel(name, platform), seed(0), capacity(0), numJumps(0), started(false) {}
    void initialize(const OpenMM::System& system, const GeneratorIntegrator& integrator) override;
    void execute(OpenMM::ContextImpl& context, const GeneratorIntegrator& integrator) override;
    double computeKineticEnergy(OpenMM::ContextImpl& context, const GeneratorIntegrator& integrator) override;
    long long getNumJumps() const override { return numJumps; }

private:
    void jump(OpenMM::ContextImpl& context, const GeneratorIntegrator& integrator);
    void checkFinite(const std::vector<OpenMM::Vec3>& positions) const;
    void makeWhole(std::vector<OpenMM::Vec3>& positions, const OpenMM::Vec3* box) const;
    void start(int capacityFrames);
    void appendContext(const torch::Tensor& rots, const torch::Tensor& trans);
    void drawVelocities(OpenMM::ContextImpl& context, const GeneratorIntegrator& integrator);
    void relax(OpenMM::ContextImpl& context, const GeneratorIntegrator& integrator);
    torch::jit::Module module;
    torch::Device torchDevice = torch::Device(torch::kCPU);
    std::vector<double> masses;
    std::vector<torch::Tensor> historyRots, historyTrans;  // context frames [N,3,3], [N,3]
    std::vector<std::string> atomLabels;  // "CA of LYS 12 (chain A)" per particle (from the propagator; may be empty)
    std::vector<std::pair<int, int> > bondTree;  // (parent, child) protein bonds, breadth-first: makes the protein whole
    torch::Tensor log10Stride;
    int fileNumSteps;  // the sampler the propagator file records (the weights' card), used when the integrator defers to it
    double fileNoiseScale;
    uint64_t seed;
    int capacity;
    long long numJumps;
    bool started;
};

class ReferenceGeneratorKernelFactory : public OpenMM::KernelFactory {
public:
    OpenMM::KernelImpl* createKernelImpl(std::string name, const OpenMM::Platform& platform, OpenMM::ContextImpl& context) const override;
};

/** SplitMix64-style seed of (seed, frame, stream), the same as openmm_starmd.model.rollout._derive_seed. */
uint64_t deriveSeed(uint64_t seed, uint64_t frame, uint64_t stream);

} // namespace StarMD

#endif
