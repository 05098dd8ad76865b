#include "ReferenceGeneratorKernels.h"
#include "openmm/OpenMMException.h"
#include "openmm/Platform.h"
#include "openmm/internal/windowsExport.h"

using namespace OpenMM;
using namespace StarMD;

// Called by Platform::loadPluginLibrary: register the kernel on the Reference and CPU platforms
// (the CPU platform runs Reference kernels for what it does not implement itself).
extern "C" OPENMM_EXPORT void registerPlatforms() {
}

extern "C" OPENMM_EXPORT void registerKernelFactories() {
    for (int i = 0; i < Platform::getNumPlatforms(); i++) {
        Platform& platform = Platform::getPlatform(i);
        if (platform.getName() == "Reference" || platform.getName() == "CPU")
            platform.registerKernelFactory(IntegrateGeneratorStepKernel::Name(), new ReferenceGeneratorKernelFactory());
    }
}

KernelImpl* ReferenceGeneratorKernelFactory::createKernelImpl(std::string name, const Platform& platform, ContextImpl& context) const {
    if (name == IntegrateGeneratorStepKernel::Name())
        return new ReferenceIntegrateGeneratorStepKernel(name, platform);
    throw OpenMMException("ReferenceGeneratorKernelFactory: unknown kernel '" + name + "'");
}
