#include "GeneratorIntegrator.h"
#include "internal/GeneratorKernels.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/ContextImpl.h"
#include <cmath>
#include <sstream>

using namespace OpenMM;
using namespace StarMD;
using std::string;
using std::vector;

static void require(bool ok, const string& what, const string& expected, double given) {
    if (!ok) {
        std::stringstream msg;
        msg << "GeneratorIntegrator: " << what << " must be " << expected << ", got " << given;
        throw OpenMMException(msg.str());
    }
}

GeneratorIntegrator::GeneratorIntegrator(const string& modelFile, double stride, int numDiffusionSteps, int randomSeed)
        : modelFile(modelFile), device("cpu"), numDiffusionSteps(0), randomSeed(randomSeed), relaxationSteps(0),
          cacheCapacity(64), useODE(false), noiseScale(-1.0), temperature(300.0), friction(1.0), relaxationStepSize(0.002) {
    if (modelFile.empty())
        throw OpenMMException("GeneratorIntegrator: modelFile is empty; pass the file written by openmm_starmd.plugin.export_propagator");
    require(std::isfinite(stride) && stride > 0, "the stride", "a positive number of ps", stride);
    setStepSize(stride);
    setNumDiffusionSteps(numDiffusionSteps);
    setConstraintTolerance(1e-6);
}

void GeneratorIntegrator::setNumDiffusionSteps(int steps) {
    require(steps >= 0, "numDiffusionSteps", ">= 1 (or 0: the model file's)", steps);
    numDiffusionSteps = steps;
}

void GeneratorIntegrator::setNoiseScale(double scale) {
    require(std::isfinite(scale) && (scale >= 0 || scale == -1.0), "the noise scale", ">= 0 (or -1: the model file's)", scale);
    noiseScale = scale;
}

void GeneratorIntegrator::setTemperature(double kelvin) {
    require(std::isfinite(kelvin) && kelvin >= 0, "the temperature", ">= 0 K", kelvin);
    temperature = kelvin;
}

void GeneratorIntegrator::setFriction(double perPs) {
    require(std::isfinite(perPs) && perPs >= 0, "the friction", ">= 0 /ps", perPs);
    friction = perPs;
}

void GeneratorIntegrator::setRelaxationSteps(int steps) {
    require(steps >= 0, "relaxationSteps", ">= 0", steps);
    relaxationSteps = steps;
}

void GeneratorIntegrator::setRelaxationStepSize(double ps) {
    require(std::isfinite(ps) && ps > 0, "the relaxation step size", "> 0 ps", ps);
    relaxationStepSize = ps;
}

void GeneratorIntegrator::setCacheCapacity(int frames) {
    require(frames >= 2, "the cache capacity", ">= 2 frames", frames);
    cacheCapacity = frames;
}

void GeneratorIntegrator::initialize(ContextImpl& contextRef) {
    if (owner != NULL && &contextRef.getOwner() != owner)
        throw OpenMMException("This Integrator is already bound to a context");
    Platform& platform = contextRef.getPlatform();
    const string name = IntegrateGeneratorStepKernel::Name();
    if (!platform.supportsKernels(vector<string>(1, name))) {
        string with;
        for (int i = 0; i < Platform::getNumPlatforms(); i++)
            if (Platform::getPlatform(i).supportsKernels(vector<string>(1, name)))
                with += (with.empty() ? "" : ", ") + Platform::getPlatform(i).getName();
        throw OpenMMException("GeneratorIntegrator: the " + platform.getName() + " platform has no STAR-MD kernel "
                "(kernels are registered for: " + (with.empty() ? string("none; the StarMDPluginReference library is not loaded") : with) +
                "); create the Context on one of those, e.g. Platform.getPlatformByName('CPU')");
    }
    context = &contextRef;
    owner = &contextRef.getOwner();
    kernel = platform.createKernel(name, contextRef);
    kernel.getAs<IntegrateGeneratorStepKernel>().initialize(contextRef.getSystem(), *this);
}

void GeneratorIntegrator::cleanup() {
    kernel = Kernel();
}

vector<string> GeneratorIntegrator::getKernelNames() {
    // Empty on purpose: a platform without the kernel gets the clear message of initialize()
    // instead of OpenMM's generic "does not support all required kernels".
    return vector<string>();
}

double GeneratorIntegrator::computeKineticEnergy() {
    return kernel.getAs<IntegrateGeneratorStepKernel>().computeKineticEnergy(*context, *this);
}

long long GeneratorIntegrator::getNumJumps() const {
    if (context == NULL)
        return 0;
    return kernel.getAs<const IntegrateGeneratorStepKernel>().getNumJumps();
}

void GeneratorIntegrator::step(int steps) {
    if (context == NULL)
        throw OpenMMException("This Integrator is not bound to a context!");
    for (int i = 0; i < steps; ++i)
        kernel.getAs<IntegrateGeneratorStepKernel>().execute(*context, *this);
}
