export { type AssignMember, assignPartitions, memberHash, quotas } from "./assign.js";
export {
  createGroup,
  Group,
  type GroupEvents,
  type GroupMember,
  type GroupServiceDefinition,
} from "./group.js";
export {
  type GroupOptions,
  MAX_GROUP_NAME,
  MAX_PARTITIONS,
  MAX_WEIGHT,
  resolveGroupOptions,
} from "./options.js";
