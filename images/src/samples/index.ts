/** The sample probe app's releases and packs: what `images/build-samples`, the tests and the demo use. */
export {
  buildSamples,
  makeTrustRevocations,
  packSampleRecipe,
  samplePackFile,
  systemdPackFile,
  SAMPLE_PACK_IDS,
  type BuildSamplesOptions,
  type SamplePackId,
  type SamplePaths,
} from './sample-packs.js';
export { loadSampleSigner, makeSampleKeys, sampleKeyPaths, REVOKED_SIGNER_NAME, type SampleKeys } from './sample-keys.js';
export {
  probeAppSource,
  sampleLicence,
  writeLicenseRecipe,
  writeReleaseRecipe,
  writeTrustRecipe,
  type SampleLicence,
  type TrustContent,
} from './recipes.js';
export {
  APP_ENTRY,
  releaseJsonOf,
  sampleRelease,
  SAMPLE_MIN_AGENT_VERSION,
  SAMPLE_MODEL,
  SAMPLE_PRODUCT,
  SAMPLE_RELEASES,
  SAMPLE_SECURITY_VERSION,
  SAMPLE_UNIT,
  SAMPLE_UNIT_FILE,
  type ReleaseJson,
  type SampleRunner,
  type SampleApp,
  type SampleFault,
  type SampleRelease,
  type SampleReleaseVersion,
  type VersionRange,
} from './releases.js';
export { MIGRATION_0001, MIGRATION_0002, MIGRATION_0003, SAMPLE_MIGRATIONS, type Migration } from './migrations.js';
export {
  COLLECTOR_PASSWORD_VAR,
  CONFIG_OPS_0002,
  CONFIG_OPS_0003,
  CONFIG_OPS_0004,
  CONFIG_TEMPLATE_V1,
  REFERENCE_TARGETS,
  type ConfigOp,
  type ConfigOpsFile,
} from './config-files.js';
