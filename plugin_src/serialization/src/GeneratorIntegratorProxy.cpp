#include "GeneratorIntegratorProxy.h"
#include "GeneratorIntegrator.h"
#include "openmm/OpenMMException.h"
#include "openmm/serialization/SerializationNode.h"
#include <typeinfo>

using namespace OpenMM;
using namespace StarMD;

static const int VERSION = 1;

GeneratorIntegratorProxy::GeneratorIntegratorProxy() : SerializationProxy("StarMDGeneratorIntegrator") {
}

void GeneratorIntegratorProxy::serialize(const void* object, SerializationNode& node) const {
    const GeneratorIntegrator& integrator = *reinterpret_cast<const GeneratorIntegrator*>(object);
    node.setIntProperty("version", VERSION);
    node.setStringProperty("modelFile", integrator.getModelFile());
    node.setDoubleProperty("stepSize", integrator.getStepSize());
    node.setDoubleProperty("constraintTolerance", integrator.getConstraintTolerance());
    node.setIntProperty("integrationForceGroups", integrator.getIntegrationForceGroups());
    node.setIntProperty("numDiffusionSteps", integrator.getNumDiffusionSteps());
    node.setBoolProperty("useODE", integrator.getUseODE());
    node.setDoubleProperty("noiseScale", integrator.getNoiseScale());
    node.setIntProperty("randomSeed", integrator.getRandomNumberSeed());
    node.setDoubleProperty("temperature", integrator.getTemperature());
    node.setDoubleProperty("friction", integrator.getFriction());
    node.setIntProperty("relaxationSteps", integrator.getRelaxationSteps());
    node.setDoubleProperty("relaxationStepSize", integrator.getRelaxationStepSize());
    node.setIntProperty("cacheCapacity", integrator.getCacheCapacity());
    node.setStringProperty("device", integrator.getDevice());
}

void* GeneratorIntegratorProxy::deserialize(const SerializationNode& node) const {
    int version = node.getIntProperty("version");
    if (version != VERSION)
        throw OpenMMException("StarMDGeneratorIntegrator: unsupported XML version " + std::to_string(version)
                              + " (this plugin reads version " + std::to_string(VERSION) + ")");
    GeneratorIntegrator* integrator = new GeneratorIntegrator(node.getStringProperty("modelFile"), node.getDoubleProperty("stepSize"),
                                                              node.getIntProperty("numDiffusionSteps"), node.getIntProperty("randomSeed"));
    try {
        integrator->setConstraintTolerance(node.getDoubleProperty("constraintTolerance"));
        integrator->setIntegrationForceGroups(node.getIntProperty("integrationForceGroups"));
        integrator->setUseODE(node.getBoolProperty("useODE"));
        integrator->setNoiseScale(node.getDoubleProperty("noiseScale"));
        integrator->setTemperature(node.getDoubleProperty("temperature"));
        integrator->setFriction(node.getDoubleProperty("friction"));
        integrator->setRelaxationSteps(node.getIntProperty("relaxationSteps"));
        integrator->setRelaxationStepSize(node.getDoubleProperty("relaxationStepSize"));
        integrator->setCacheCapacity(node.getIntProperty("cacheCapacity"));
        integrator->setDevice(node.getStringProperty("device"));
    }
    catch (...) {
        delete integrator;
        throw;
    }
    return integrator;
}

// Register the proxy when the library is loaded (as OpenMM's own plugins do).
extern "C" __attribute__((constructor)) void registerStarMDSerializationProxies() {
    SerializationProxy::registerProxy(typeid(GeneratorIntegrator), new GeneratorIntegratorProxy());
}
