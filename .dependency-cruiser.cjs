/**
 * The layers of Sonde (docs/architecture.md), enforced on every `npm test`. Imports point down:
 *
 *   cli/                                  the `sonde` command root: composes everything
 *   lxc/                                  the lab (virtual probes) and the demo
 *   server/                               the fleet server
 *   agent/        images/                 the probe's agent; the vendor tools (keys, packer CLI, samples, probe image)
 *   pack/                                 the pack format, one module behind pack/src/index.ts
 *   base/                                 errors, atomic writes, fault points, pid locks, MQTT schemas, CLI helpers
 *
 * agent/ and images/ are peers and never import each other; the server may use the vendor's
 * key issuance (its own CA) but never the agent. bench/ and test/ sit on top and may import
 * anything (tests may reach behind the pack module's door to test its parts).
 */
const LAYERS_ABOVE = {
  base: ['pack', 'agent', 'images', 'server', 'lxc', 'cli'],
  pack: ['agent', 'images', 'server', 'lxc', 'cli'],
  agent: ['images', 'server', 'lxc', 'cli'],
  images: ['agent', 'server', 'lxc', 'cli'],
  server: ['agent', 'lxc', 'cli'],
  lxc: ['cli'],
};

const upward = Object.entries(LAYERS_ABOVE).map(([layer, above]) => ({
  name: `no-upward-import-from-${layer}`,
  comment: `${layer}/ may import only the layers below it (docs/architecture.md); ${above.join(', ')} are not below it`,
  severity: 'error',
  from: { path: `^${layer}/` },
  to: { path: `^(${above.join('|')})/` },
}));

module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'server-never-imports-the-install-engine',
      comment: 'the fleet server shares no code with the agent; what both need lives in base/ or pack/',
      severity: 'error',
      from: { path: '^server/' },
      to: { path: '^agent/' },
    },
    {
      name: 'pack-internals-only-through-its-entry',
      comment: 'outside pack/ (tests excepted), the pack module is imported through pack/src/index.ts only',
      severity: 'error',
      from: { path: '^(base|agent|images|server|lxc|cli|bench)/' },
      to: { path: '^pack/src/', pathNot: '^pack/src/index\\.ts$' },
    },
    {
      name: 'production-never-imports-the-lab-tests-or-benchmarks',
      comment: 'what ships (base, pack, agent, server, vendor tools) never loads the lab, a test or a benchmark',
      severity: 'error',
      from: { path: '^(base|pack|agent|images|server)/' },
      to: { path: '^(lxc|test|bench)/' },
    },
    {
      name: 'cli-never-imports-tests-or-benchmarks',
      severity: 'error',
      from: { path: '^(cli|lxc)/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'no-node-forge-on-the-verification-path',
      comment: 'DESIGN.md, "Trust": node-forge issues keys and certificates; verification is node:crypto only',
      severity: 'error',
      from: { path: '^(base|pack|agent)/' },
      to: { path: 'node_modules/node-forge/' },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'an import that resolves to nothing',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^dist/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs', '.cjs', '.json'], conditionNames: ['import', 'require', 'node', 'default', 'types'], exportsFields: ['exports'] },
  },
};
