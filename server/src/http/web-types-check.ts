import type { z } from 'zod';
import type * as Web from '../../web/api-types.js';
import type {
  auditEntrySchema,
  fleetSummarySchema,
  packDetailSchema,
  probeDetailSchema,
  receiptSchema,
  rolloutStatusSchema,
  sessionViewSchema,
  targetViewSchema,
  tokenViewSchema,
} from './response-schemas.js';

/**
 * Compile-time only: every answer the dashboard reads must fit the type the page expects
 * (server/web/api-types.ts). A schema that changes under the page fails `npm run build` here.
 */
type Fits<Actual extends Expected, Expected> = Actual;
export type WebTypesFit = [
  Fits<z.infer<typeof sessionViewSchema>, Web.Session>,
  Fits<z.infer<typeof probeDetailSchema>, Web.ProbeDetail>,
  Fits<z.infer<typeof fleetSummarySchema>, Web.FleetSummary>,
  Fits<z.infer<typeof receiptSchema>, Web.Receipt>,
  Fits<z.infer<typeof packDetailSchema>, Web.PackDetail>,
  Fits<z.infer<typeof rolloutStatusSchema>, Web.RolloutStatus>,
  Fits<z.infer<typeof targetViewSchema>, Web.Target>,
  Fits<z.infer<typeof tokenViewSchema>, Web.TokenView>,
  Fits<z.infer<typeof auditEntrySchema>, Web.AuditEntry>,
];
