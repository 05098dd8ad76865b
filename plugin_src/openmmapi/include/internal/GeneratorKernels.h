#ifndef STARMD_GENERATOR_KERNELS_H_
#define STARMD_GENERATOR_KERNELS_H_

#include "GeneratorIntegrator.h"
#include "openmm/KernelImpl.h"
#include "openmm/Platform.h"
#include "openmm/System.h"
#include <string>

namespace StarMD {

/** The kernel behind GeneratorIntegrator: one STAR-MD jump per execute(). */
class IntegrateGeneratorStepKernel : public OpenMM::KernelImpl {
public:
    static std::string Name() { return "IntegrateStarMDGeneratorStep"; }
    IntegrateGeneratorStepKernel(std::string name, const OpenMM::Platform& platform) : OpenMM::KernelImpl(name, platform) {}
    /** Load the model file and check it matches the System (throws OpenMMException). */
    virtual void initialize(const OpenMM::System& system, const GeneratorIntegrator& integrator) = 0;
    /** One jump. */
    virtual void execute(OpenMM::ContextImpl& context, const GeneratorIntegrator& integrator) = 0;
    virtual double computeKineticEnergy(OpenMM::ContextImpl& context, const GeneratorIntegrator& integrator) = 0;
    virtual long long getNumJumps() const = 0;
};

} // namespace StarMD

#endif
