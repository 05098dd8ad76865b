#ifndef STARMD_GENERATOR_INTEGRATOR_PROXY_H_
#define STARMD_GENERATOR_INTEGRATOR_PROXY_H_

#include "openmm/serialization/SerializationProxy.h"

namespace StarMD {

/** XML serialisation of GeneratorIntegrator (registered when libStarMDPlugin is loaded). */
class GeneratorIntegratorProxy : public OpenMM::SerializationProxy {
public:
    GeneratorIntegratorProxy();
    void serialize(const void* object, OpenMM::SerializationNode& node) const override;
    void* deserialize(const OpenMM::SerializationNode& node) const override;
};

} // namespace StarMD

#endif
